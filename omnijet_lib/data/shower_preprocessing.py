"""Hit pre-processing of OmniJet-α_C (docs/showers.md), its exact inverse, and the post-processing onto the grid.

Pre-processing, per hit: ``(x - 14.5) * 0.3``, ``(y - 14.5) * 0.3``,
``(z - 15.5) * 0.2`` and ``log(E / MeV) + 1``; hits sorted by energy (most
energetic first) and padded to 1700 with a mask.  Those are the numbers of the
30 × 30 × 30 ECAL grid; on another geometry the coordinates are centred and scaled
alike (x, y to about ±4.5, z to about ±3: :class:`ShowerPreprocessingConfig`).

Post-processing (:func:`voxelise`): what a tokenizer or a generative model gives
back has continuous coordinates, and two hits may land in the same cell.  A
calorimeter reads one energy per cell, so each hit is put onto a voxel of its
geometry's grid and every cell is left with at most one hit; energies and the
number of hits are kept exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cache
from typing import ClassVar

import numpy as np

from omnijet_lib.data.geometry import ILD_ECAL, CalorimeterGeometry
from omnijet_lib.data.showers import Showers, check_showers
from omnijet_lib.errors import BadDataError

FEATURES = ("x", "y", "z", "log_energy")  # the columns of a pre-processed array, scaled


@dataclass(frozen=True)
class ShowerPreprocessingConfig:
    """How hits become a network's features.  Shifts and scales left at None follow the geometry:
    x, y centred on the grid and scaled by 9 / cells (ECAL: 14.5 and 0.3, cells 0..29 -> -4.35..4.35),
    z shifted by (layers + 1) / 2 and scaled by 6 / layers (ECAL: 15.5 and 0.2, layers 0..29 -> -3.1..2.7),
    the paper's numbers on its grid."""

    content: ClassVar[str] = "showers"  # what a tokenizer with this pre-processing tokenizes
    max_hits: int = 1700  # sequence length of the tokenizer and the GPT: the most hits a shower has
    x_shift: float | None = None
    x_scale: float | None = None
    y_shift: float | None = None
    y_scale: float | None = None
    z_shift: float | None = None
    z_scale: float | None = None
    log_energy_shift: float = 1.0  # log(E / MeV) + shift: the 0.1 MeV threshold -> -1.3, 13 MeV -> 3.6
    geometry: CalorimeterGeometry = ILD_ECAL

    def __post_init__(self) -> None:
        if isinstance(self.geometry, dict):  # read back from a tokenizer file
            object.__setattr__(self, "geometry", CalorimeterGeometry.from_dict(self.geometry))
        g = self.geometry
        derived = {
            "x_shift": (g.n_x - 1) / 2, "x_scale": 9 / g.n_x, "y_shift": (g.n_y - 1) / 2, "y_scale": 9 / g.n_y,
            "z_shift": (g.n_layers + 1) / 2, "z_scale": 6 / g.n_layers,
        }  # fmt: skip
        for name, value in derived.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        if self.max_hits < 1 or 0.0 in (self.x_scale, self.y_scale, self.z_scale):
            msg = f"max_hits must be >= 1 and every scale non-zero; got {self}"
            raise ValueError(msg)

    @property
    def sequence_length(self) -> int:
        """Tokens of the longest shower (one per hit), START and STOP not counted."""
        return self.max_hits

    @property
    def n_features(self) -> int:
        """Features per hit that a tokenizer sees: :data:`FEATURES`."""
        return len(FEATURES)

    def to_dict(self) -> dict:
        return asdict(self)


def scale_hits(hits: np.ndarray, config: ShowerPreprocessingConfig = ShowerPreprocessingConfig()) -> np.ndarray:
    """Physical (x, y, z, E [MeV]) -> the network's (..., 4) features, in float64; E must be > 0."""
    hits = np.asarray(hits, dtype=np.float64)
    if np.any(hits[..., 3] <= 0):
        msg = "hit energies must be > 0 to take their log"
        raise BadDataError(msg)
    return np.stack(
        [
            (hits[..., 0] - config.x_shift) * config.x_scale,
            (hits[..., 1] - config.y_shift) * config.y_scale,
            (hits[..., 2] - config.z_shift) * config.z_scale,
            np.log(hits[..., 3]) + config.log_energy_shift,
        ],
        axis=-1,
    )


def unscale_hits(features: np.ndarray, config: ShowerPreprocessingConfig = ShowerPreprocessingConfig()) -> np.ndarray:
    """Inverse of :func:`scale_hits`, in float64."""
    features = np.asarray(features, dtype=np.float64)
    return np.stack(
        [
            features[..., 0] / config.x_scale + config.x_shift,
            features[..., 1] / config.y_scale + config.y_shift,
            features[..., 2] / config.z_scale + config.z_shift,
            np.exp(features[..., 3] - config.log_energy_shift),
        ],
        axis=-1,
    )


def preprocess_showers(
    showers: Showers, config: ShowerPreprocessingConfig = ShowerPreprocessingConfig(), *, truncate: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Scaled hits sorted by energy (descending), padded to ``config.max_hits``: ``(features, mask)``.

    ``features`` is (N, max_hits, 4) float32 (:data:`FEATURES`, 0 where padded),
    ``mask`` (N, max_hits) bool.  Hits of equal energy keep their stored order.
    A shower with more than ``max_hits`` hits is an error, unless ``truncate=True``
    asks to keep only its ``max_hits`` most energetic hits.
    """
    check_showers(showers, source="showers to pre-process")
    if showers.geometry != config.geometry:
        msg = (
            f"showers of geometry {showers.geometry.name!r} given to a pre-processing made for "
            f"{config.geometry.name!r}: use ShowerPreprocessingConfig(geometry=showers.geometry)"
        )
        raise ValueError(msg)
    n_hits = showers.n_hits
    too_many = np.flatnonzero(n_hits > config.max_hits)
    if too_many.size and not truncate:
        worst = too_many[np.argmax(n_hits[too_many])]
        msg = (
            f"{too_many.size} shower(s) have more than max_hits = {config.max_hits} hits (shower {worst} has "
            f"{n_hits[worst]}); raise ShowerPreprocessingConfig.max_hits, or pass truncate=True to keep "
            f"the {config.max_hits} most energetic hits of each"
        )
        raise BadDataError(msg)
    order = np.argsort(-showers.energy, axis=1, kind="stable")[:, : config.max_hits]  # padding (E = 0) goes last
    hits = np.take_along_axis(showers.hits, order[..., None], axis=1)  # (N, min(max_hits, width), 4)
    hits = np.pad(hits, ((0, 0), (0, config.max_hits - hits.shape[1]), (0, 0)))  # (N, max_hits, 4)
    mask = hits[..., 3] > 0
    features = np.zeros(hits.shape, dtype=np.float32)
    features[mask] = scale_hits(hits[mask], config)
    return features, mask


def showers_from_features(
    features: np.ndarray,
    mask: np.ndarray,
    incident_energy: np.ndarray,
    config: ShowerPreprocessingConfig = ShowerPreprocessingConfig(),
) -> Showers:
    """Inverse of :func:`preprocess_showers`: the showers whose hits are the masked rows of ``features``.

    Works on anything in the pre-processed space: real showers, token
    reconstructions, generated showers; their coordinates stay continuous (see
    :func:`voxelise`).  An energy too small for float32 is raised to the smallest
    normal float32, so a masked hit never turns into padding.
    """
    features, mask = np.asarray(features, dtype=np.float64), np.asarray(mask, dtype=bool)
    incident_energy = np.asarray(incident_energy, dtype=np.float32).reshape(-1)
    if features.ndim != 3 or features.shape[-1] != len(FEATURES) or features.shape[:2] != mask.shape:
        msg = f"expected features (N, L, {len(FEATURES)}) and mask (N, L); got {features.shape} and {mask.shape}"
        raise ValueError(msg)
    if len(incident_energy) != len(features):
        msg = f"{len(incident_energy)} incident energies for {len(features)} showers"
        raise ValueError(msg)
    hits = np.zeros(features.shape, dtype=np.float32)
    values = unscale_hits(features[mask], config).astype(np.float32)  # (M, 4)
    if not np.isfinite(values).all():
        msg = "non-finite hit after inverting the pre-processing (NaN features, or log-energy beyond float32)"
        raise BadDataError(msg)
    values[:, 3] = np.maximum(values[:, 3], np.finfo(np.float32).tiny)
    hits[mask] = values
    return Showers(hits, incident_energy, config.geometry)


# --- post-processing ----------------------------------------------------------------------------------------------


@cache
def _offsets(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Moves tried in turn by :func:`voxelise` on a grid of ``shape`` (x, y, z cells).

    Along the column, (2 (n_z - 1),) dz = -1, +1, -2, +2, ... (at equal distance the
    smaller z first).  Anywhere in the grid, (K, 3) (dx, dy, dz) without the
    pure-z moves (those failed already), by 3-D distance, ties in order of dz,
    then dy, then dx.
    """
    steps = np.arange(1, shape[2])
    along_z = np.stack([-steps, steps], axis=1).reshape(-1)
    spans = [np.arange(-(n - 1), n) for n in shape]
    dx, dy, dz = (a.reshape(-1) for a in np.meshgrid(*spans, indexing="ij"))
    keep = (dx != 0) | (dy != 0)
    dx, dy, dz = dx[keep], dy[keep], dz[keep]
    order = np.lexsort((dx, dy, dz, dx**2 + dy**2 + dz**2))
    return along_z, np.stack([dx[order], dy[order], dz[order]], axis=1)


def voxelise(
    showers: Showers, *, chunk_size: int = 256, return_clipped: bool = False
) -> Showers | tuple[Showers, np.ndarray]:
    """Put every hit onto a voxel of the grid, at most one hit per voxel; energies and hit counts are kept.

    1. x, y, z are rounded to the nearest cell index (halves round up) and
       clipped into the grid of the showers' geometry (0..29 on the ECAL; on a
       cylindrical grid the angular bin wraps around instead).  ``return_clipped=True`` returns, with the showers,
       the (N,) number of hits of each shower that lay outside the grid and were
       clipped onto its edge: a decoder or model that places many hits outside
       has a problem that voxelising hides.
    2. Where several hits share a voxel, the most energetic stays (equal
       energies: the one stored first); the others are displaced.
    3. Displaced hits move along z, within their (x, y) column, in rounds of
       growing distance |Δz| = 1, 2, ...: at each distance the smaller z is
       tried first, and a free voxel claimed by several hits at once goes to the
       most energetic.  So each hit lands on the nearest voxel of its column
       that is free when it moves.
    4. A hit whose column is full (all its layers taken) goes, in the same way,
       to the nearest free voxel of the whole grid by 3-D distance in cell
       indices (ties: in order of Δz, then Δy, then Δx, signed, smaller first).

    Equivalently: the moves are tried one after another in that order, and at
    each move the pending hits take their target voxel if free, most energetic
    first.  Hits keep their slot; padded slots come back all zero; energies are
    not touched.  A shower with more hits than the grid has cells cannot be placed and
    is an error.  Showers are handled ``chunk_size`` at a time to bound memory.
    """
    if chunk_size < 1:
        msg = f"chunk_size must be >= 1; got {chunk_size}"
        raise ValueError(msg)
    energy = showers.energy
    if not np.isfinite(energy).all() or (energy < 0).any():
        msg = "hit energies must be finite and >= 0 (0 marks padding) to voxelise"
        raise BadDataError(msg)
    n_hits, geometry = showers.n_hits, showers.geometry
    if len(n_hits) and n_hits.max() > geometry.n_cells:
        worst = int(np.argmax(n_hits))
        grid = " × ".join(map(str, geometry.shape))
        msg = f"shower {worst} has {n_hits[worst]} hits, more than the {geometry.n_cells} voxels of the {grid} grid"
        raise BadDataError(msg)
    coordinates = showers.hits[..., :3][showers.mask]
    if not np.isfinite(coordinates).all():
        msg = "non-finite (NaN/inf) hit coordinates cannot be voxelised"
        raise BadDataError(msg)
    out = np.zeros(showers.hits.shape, dtype=np.float32)
    for start in range(0, len(showers), chunk_size):
        out[start : start + chunk_size] = _voxelise_chunk(
            showers.hits[start : start + chunk_size], geometry.shape, periodic_x=geometry.grid == "cylindrical"
        )
    voxelised = Showers(out, showers.incident_energy, geometry)
    if not return_clipped:
        return voxelised
    low, high = np.full(3, -0.5), np.array(geometry.shape) - 0.5
    if geometry.grid == "cylindrical":  # the angle wraps around: never outside
        low[0], high[0] = -np.inf, np.inf
    outside = ((showers.hits[..., :3] < low) | (showers.hits[..., :3] >= high)).any(axis=-1)
    return voxelised, (outside & showers.mask).sum(axis=1)


def _voxelise_chunk(hits: np.ndarray, shape: tuple[int, int, int], *, periodic_x: bool = False) -> np.ndarray:
    """:func:`voxelise` for one (n, max_hits, 4) block of showers, all in memory, on a grid of ``shape``."""
    n_x, n_y, n_z = shape
    index = np.flatnonzero(hits[..., 3].reshape(-1) > 0)  # (M,) hits of all showers, shower-major
    rows = (index // hits.shape[1]).astype(np.int32)  # (M,) shower of each hit
    values = hits.reshape(-1, 4)[index]  # (M, 4)
    energy = values[:, 3]
    cells = np.add(values[:, :3], 0.5, dtype=np.float64)  # (M, 3): nearest cell, halves up
    np.floor(cells, out=cells)
    if periodic_x:  # an angular bin: -1 is the last one
        np.mod(cells[:, 0], n_x, out=cells[:, 0])
    np.clip(cells, 0, np.array(shape) - 1, out=cells)
    x, y, z = cells.astype(np.int32).T.copy()
    column = (rows.astype(np.int64) * n_x + x) * n_y + y  # (M,) (shower, x, y) column within the chunk
    voxel = column * n_z + z  # (M,) (shower, x, y, z) voxel within the chunk

    # Hits sharing a voxel: the most energetic keeps it (a stable sort keeps stored order among equals).
    order = np.argsort(voxel, kind="stable")
    shared = np.zeros(len(voxel), dtype=bool)
    shared[1:] = voxel[order[1:]] == voxel[order[:-1]]
    shared[:-1] |= shared[1:]  # every member of a group of two or more
    if shared.any():
        group = order[shared]  # hits in crowded voxels, grouped by voxel, stored order within each
        group = group[np.lexsort((-energy[group], voxel[group]))]
        keeper = np.ones(len(group), dtype=bool)
        keeper[1:] = voxel[group[1:]] != voxel[group[:-1]]
        displaced = group[~keeper]
        displaced = displaced[np.lexsort((displaced, -energy[displaced]))]  # most energetic first
        occupied = np.zeros(len(hits) * n_x * n_y * n_z, dtype=bool)
        occupied[voxel] = True  # every voxel reached by rounding stays taken by its keeper
        placed = np.zeros(len(voxel), dtype=bool)
        along_z, anywhere = _offsets(shape)
        _move_along_z(displaced, z, column, occupied, placed, along_z, n_z)
        overflow = displaced[~placed[displaced]]  # their columns are full; still most energetic first
        if overflow.size:
            _move_anywhere(overflow, rows, x, y, z, occupied, placed, anywhere, shape)
        if not placed[displaced].all():  # cannot happen: the hit count was checked against the grid
            msg = f"internal error: {(~placed[displaced]).sum()} hits found no free voxel"
            raise RuntimeError(msg)

    out = np.zeros(hits.shape, dtype=np.float32)
    out.reshape(-1, 4)[index] = np.stack([x, y, z, energy], axis=1)
    return out


def _claim(targets: np.ndarray, free: np.ndarray) -> np.ndarray:
    """Positions of the hits that get their target voxel: free, and first (highest priority) among its claimants."""
    claimants = np.flatnonzero(free)
    _, first = np.unique(targets[claimants], return_index=True)
    return claimants[first]


def _move_along_z(pending, z, column, occupied, placed, steps, n_z: int) -> None:
    """Move the ``pending`` hits (priority order) along their columns of ``n_z`` layers by ``steps`` in turn;
    update in place.  A hit whose column has filled up leaves ``pending`` unplaced.
    """
    n_columns = len(occupied) // n_z
    free = n_z - np.bincount(column[~_is(pending, len(column))], minlength=n_columns)  # free voxels per column
    pending = pending[free[column[pending]] > 0]
    for dz in steps:
        if pending.size == 0:
            break
        target = z[pending] + dz
        inside = (target >= 0) & (target < n_z)
        voxel = column[pending] * n_z + np.where(inside, target, 0)
        won = _claim(voxel, inside & ~occupied[voxel])
        if won.size == 0:
            continue
        hits = pending[won]
        occupied[voxel[won]] = True
        z[hits] = target[won]
        placed[hits] = True
        np.subtract.at(free, column[hits], 1)
        pending = pending[~placed[pending] & (free[column[pending]] > 0)]


def _move_anywhere(pending, rows, x, y, z, occupied, placed, offsets, shape: tuple[int, int, int]) -> None:
    """Move the ``pending`` hits (priority order) by ``offsets`` (K, 3) in turn until each is placed; in place.

    Offsets at which no pending hit finds a free voxel change nothing, so after
    each such offset the next test takes twice as many at once (up to ~64k
    voxels per test): a few hits that must travel far do not cost one step per offset.
    """
    n_x, n_y, n_z = shape
    k, width = 0, 1
    while pending.size and k < len(offsets):
        width = min(width, max(1, 65536 // pending.size))
        block = offsets[k : k + width]  # (B, 3)
        tx, ty, tz = (c[pending][:, None] + block[:, i] for i, c in enumerate((x, y, z)))  # (P, B) each
        inside = (tx >= 0) & (tx < n_x) & (ty >= 0) & (ty < n_y) & (tz >= 0) & (tz < n_z)
        voxel = np.where(inside, ((rows[pending][:, None].astype(np.int64) * n_x + tx) * n_y + ty) * n_z + tz, 0)
        free = inside & ~occupied[voxel]  # (P, B)
        useful = np.flatnonzero(free.any(axis=0))
        if useful.size == 0:
            k, width = k + len(block), 2 * width
            continue
        width = 1
        b = useful[0]  # the first offset at which some hit moves
        won = _claim(voxel[:, b], free[:, b])
        hits = pending[won]
        occupied[voxel[won, b]] = True
        x[hits], y[hits], z[hits] = tx[won, b], ty[won, b], tz[won, b]
        placed[hits] = True
        pending = pending[~placed[pending]]
        k += b + 1


def _is(indices: np.ndarray, size: int) -> np.ndarray:
    """(size,) bool, True at ``indices``."""
    flags = np.zeros(size, dtype=bool)
    flags[indices] = True
    return flags
