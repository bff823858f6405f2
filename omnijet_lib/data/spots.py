"""What the two parameterised shower simulators share: spots drawn from tables, summed into cells, read out as hits.

Both :mod:`omnijet_lib.data.shower_simulation` (photons in the ECAL) and
:mod:`omnijet_lib.data.pion_simulation` (pions in the AHCAL) deposit a shower's
energy as spots: each spot's energy, radius and azimuth come from a 2^16-entry
table indexed by 16 random bits (one 64-bit draw gives three of them), its cell by
truncating its position, and the spots of a whole batch of showers are summed into
one flat array of cells.  :func:`hits_from_cells` turns that array back into hit
rows, shower after shower, most energetic first.
"""

from __future__ import annotations

import threading

import numpy as np

TABLE_BITS = 16  # spot energies, radii and azimuths come from 2^16-entry tables indexed by random bits
OFFSET = 4096  # cells added to x and y so that float -> int truncation is a floor

_UNIFORM = (np.arange(1 << TABLE_BITS) + 0.5) / (1 << TABLE_BITS)  # uniform in (0, 1), 2^16 steps
COS, SIN = np.cos(2 * np.pi * _UNIFORM).astype(np.float32), np.sin(2 * np.pi * _UNIFORM).astype(np.float32)
# r / R of the radial profile 2rR²/(r² + R²)²: the inverse of its cumulative r²/(r² + R²); at most 362.
RADIUS = np.sqrt(_UNIFORM / (1 - _UNIFORM)).astype(np.float32)

_work = threading.local()  # per thread (and process): the zeroed cell buffer, reused across batches


def cell_buffer(n_cells: int) -> np.ndarray:
    """A zeroed float32 array of at least ``n_cells`` cells, kept per thread: allocating one per batch would
    cost its page faults.  Whoever fills it leaves it zeroed (:func:`hits_from_cells` does)."""
    if getattr(_work, "cells", None) is None or len(_work.cells) < n_cells:
        _work.cells = np.zeros(n_cells, dtype=np.float32)
    return _work.cells


def hits_from_cells(
    cells: np.ndarray, n_showers: int, shape: tuple[int, int, int], max_hits: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Rows (K, 4) x, y, z, E of the non-zero cells of ``cells`` (``n_showers`` · cells of ``shape``, flat index
    shower · n_cells + (x · n_y + y) · n_layers + z), by shower then falling energy; and the hits per shower.

    Only the ``max_hits`` most energetic cells of a shower are kept (None: all).  One int64 sort key per cell
    packs the shower, the complement of the float32 energy bits (positive floats order as their bits) and the
    cell, so one plain sort orders them.  The cells are zeroed.
    """
    n_cells = int(np.prod(shape))
    cell_bits = max(1, (n_cells - 1).bit_length())
    index = np.flatnonzero(cells != 0)
    energy = cells[index]
    cells[index] = 0.0
    shower, cell = np.divmod(index, n_cells)
    inverted = np.int64(0x7FFFFFFF) - energy.view(np.int32)
    key = np.sort((shower << (32 + cell_bits)) | (inverted << cell_bits) | cell)
    n_hits = np.bincount(key >> (32 + cell_bits), minlength=n_showers)
    if max_hits is not None:
        rank = np.arange(len(key)) - np.repeat(np.cumsum(n_hits) - n_hits, n_hits)
        key = key[rank < max_hits]
        n_hits = np.minimum(n_hits, max_hits)
    rows = np.empty((len(key), 4), dtype=np.float32)
    rows[:, 0], rows[:, 1], rows[:, 2] = np.unravel_index(key & ((1 << cell_bits) - 1), shape)
    rows[:, 3] = (np.int64(0x7FFFFFFF) - ((key >> cell_bits) & 0xFFFFFFFF)).astype(np.int32).view(np.float32)
    return rows, n_hits
