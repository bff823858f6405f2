"""Calorimeter geometries: the grid a shower's hits lie on and the material in front of each layer.

A hit's three coordinates are cell indices ``(x, y, z)`` on the grid of its geometry
(docs/geometry.md): ``z`` is always the layer (0 at the front), and ``x``, ``y`` are

* on a **Cartesian** grid, the transverse cells of pitch ``cell_size_mm``, the beam
  axis through the middle of the grid;
* on a **cylindrical** grid (the CaloChallenge 2022 datasets), the angular bin
  (``n_x`` bins over 2π) and the radial bin (edges ``radial_edges_mm``) around the
  particle's axis.

Every shower carries its geometry (:class:`omnijet_lib.data.showers.Showers`), every
shower file stores it, and the modules that bin, voxelise, measure or model showers
read its sizes from it.  Known geometries are in :data:`GEOMETRIES` by name.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

GRIDS = ("cartesian", "cylindrical")


@dataclass(frozen=True)
class Material:
    """A calorimeter material; lengths from the PDG's "Atomic and nuclear properties of materials"."""

    name: str
    radiation_length_mm: float  # X0
    interaction_length_mm: float  # nuclear interaction length λ_I
    density: float  # g/cm³
    dedx_min: float  # MeV cm²/g, minimum ionisation


TUNGSTEN = Material("tungsten", 3.504, 99.46, 19.3, 1.145)
SILICON = Material("silicon", 93.70, 465.2, 2.329, 1.664)
IRON = Material("iron", 17.57, 167.7, 7.874, 1.451)
POLYSTYRENE = Material("polystyrene scintillator", 413.1, 770.7, 1.060, 2.052)
MATERIALS = {m.name: m for m in (TUNGSTEN, SILICON, IRON, POLYSTYRENE)}


@dataclass(frozen=True)
class CalorimeterGeometry:
    """The readout grid of a sampling calorimeter and its layers' material.

    Layer ``i`` is ``absorber_mm[i]`` of ``absorber`` followed by ``active_mm`` of
    ``active`` (the readout); ``other_mm`` per layer (PCB, cables, air) widens it but
    adds no radiation length here.
    """

    name: str
    grid: str  # "cartesian" or "cylindrical"
    n_x: int  # cells along x, or angular bins
    n_y: int  # cells along y, or radial bins
    n_layers: int
    absorber: Material
    absorber_mm: tuple[float, ...]  # per layer
    active: Material
    active_mm: float
    other_mm: float = 0.0
    cell_size_mm: float = 0.0  # Cartesian: transverse pitch
    radial_edges_mm: tuple[float, ...] = ()  # cylindrical: n_y + 1 increasing edges from 0
    mip_mev: float = 0.0  # most probable energy of a minimum-ionising particle in one active layer
    hit_threshold_mev: float = 0.0  # cells below it are noise: not hits for any observable but the spectrum
    source: str = ""  # where the numbers come from

    def __post_init__(self) -> None:
        if self.grid not in GRIDS:
            msg = f"grid must be one of {GRIDS}, got {self.grid!r}"
            raise ValueError(msg)
        if min(self.n_x, self.n_y, self.n_layers) < 1:
            msg = f"a geometry needs at least one cell per axis, got {self.shape}"
            raise ValueError(msg)
        object.__setattr__(self, "absorber_mm", tuple(float(a) for a in self.absorber_mm))
        object.__setattr__(self, "radial_edges_mm", tuple(float(r) for r in self.radial_edges_mm))
        if len(self.absorber_mm) != self.n_layers:
            msg = f"absorber_mm has {len(self.absorber_mm)} entries for {self.n_layers} layers"
            raise ValueError(msg)
        if self.grid == "cartesian" and self.cell_size_mm <= 0:
            msg = "a Cartesian geometry needs cell_size_mm > 0"
            raise ValueError(msg)
        if self.grid == "cylindrical":
            edges = np.asarray(self.radial_edges_mm)
            if len(edges) != self.n_y + 1 or edges[0] != 0 or np.any(np.diff(edges) <= 0):
                msg = (
                    f"a cylindrical geometry needs n_y + 1 = {self.n_y + 1} increasing radial edges from 0, got {edges}"
                )
                raise ValueError(msg)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Cells per axis, (x, y, z)."""
        return (self.n_x, self.n_y, self.n_layers)

    @property
    def n_cells(self) -> int:
        return self.n_x * self.n_y * self.n_layers

    @property
    def layer_x0(self) -> np.ndarray:
        """(n_layers,) radiation lengths in each layer (absorber and active)."""
        return np.asarray(self.absorber_mm) / self.absorber.radiation_length_mm + (
            self.active_mm / self.active.radiation_length_mm
        )

    @property
    def layer_lambda(self) -> np.ndarray:
        """(n_layers,) nuclear interaction lengths in each layer (absorber and active)."""
        return np.asarray(self.absorber_mm) / self.absorber.interaction_length_mm + (
            self.active_mm / self.active.interaction_length_mm
        )

    @property
    def layer_depth_lambda(self) -> np.ndarray:
        """(n_layers,) depth [λ_I] of the middle of each layer's active material from the front."""
        end = np.cumsum(self.layer_lambda)
        return end - 0.5 * self.active_mm / self.active.interaction_length_mm

    @property
    def layer_depth_x0(self) -> np.ndarray:
        """(n_layers,) depth [X0] of the middle of each layer's active material from the front."""
        end = np.cumsum(self.layer_x0)
        return end - 0.5 * self.active_mm / self.active.radiation_length_mm

    @property
    def mip_sampling_fraction(self) -> np.ndarray:
        """(n_layers,) share of a minimum-ionising particle's energy loss seen in the active layer."""
        active = self.active_mm * self.active.density * self.active.dedx_min
        absorber = np.asarray(self.absorber_mm) * self.absorber.density * self.absorber.dedx_min
        return active / (active + absorber)

    def transverse_mm(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Transverse position [mm] of cell coordinates (x, y), from the calorimeter's axis.

        Cartesian: the axis runs through the grid's middle.  Cylindrical: the cell's
        angular and radial centre (the middle of its radial bin) in x = r cos α, y = r sin α.
        Fractional coordinates interpolate (radially between bin middles).
        """
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if self.grid == "cartesian":
            return (x - (self.n_x - 1) / 2) * self.cell_size_mm, (y - (self.n_y - 1) / 2) * self.cell_size_mm
        edges = np.asarray(self.radial_edges_mm)
        radius = np.interp(y, np.arange(self.n_y), 0.5 * (edges[1:] + edges[:-1]))
        angle = 2 * np.pi * (x + 0.5) / self.n_x
        return radius * np.cos(angle), radius * np.sin(angle)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, values: dict) -> CalorimeterGeometry:
        """The inverse of :meth:`to_dict`; unknown or missing keys are a clear error."""
        values = dict(values)
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            msg = f"unknown geometry field(s) {sorted(unknown)}; a geometry has {sorted(cls.__dataclass_fields__)}"
            raise ValueError(msg)
        for key in ("absorber", "active"):
            if isinstance(values.get(key), dict):
                values[key] = Material(**values[key])
        values["absorber_mm"] = tuple(values.get("absorber_mm", ()))
        values["radial_edges_mm"] = tuple(values.get("radial_edges_mm", ()))
        try:
            return cls(**values)
        except TypeError as err:
            msg = f"incomplete geometry description: {err}"
            raise ValueError(msg) from None

    @classmethod
    def from_json(cls, text: str) -> CalorimeterGeometry:
        return cls.from_dict(json.loads(text))


def cylindrical_geometry(
    name: str,
    *,
    n_alpha: int,
    radial_edges_mm,
    n_layers: int,
    absorber: Material = TUNGSTEN,
    absorber_mm: float = 2.8,
    active: Material = SILICON,
    active_mm: float = 0.6,
    mip_mev: float = 0.0,
    hit_threshold_mev: float = 0.0,
    source: str = "",
) -> CalorimeterGeometry:
    """A cylindrical grid of ``n_layers`` layers × ``n_alpha`` angular × ``len(radial_edges_mm) - 1`` radial bins.

    The default material is the CaloChallenge 2022 datasets 2 and 3: each readout layer
    groups two physical layers of 1.4 mm tungsten and 0.3 mm silicon.
    """
    edges = tuple(float(r) for r in radial_edges_mm)
    return CalorimeterGeometry(
        name=name, grid="cylindrical", n_x=n_alpha, n_y=len(edges) - 1, n_layers=n_layers,
        absorber=absorber, absorber_mm=(absorber_mm,) * n_layers, active=active, active_mm=active_mm,
        radial_edges_mm=edges, mip_mev=mip_mev, hit_threshold_mev=hit_threshold_mev, source=source,
    )  # fmt: skip


# The ILD-like Si-W ECAL of OmniJet-α_C (docs/showers.md): 30 layers, 20 of 2.1 mm W then 10 of 4.2 mm,
# 0.5 mm Si, 5 × 5 mm² cells, 3.635 mm of other material per layer; a MIP leaves 0.2 MeV in 0.5 mm Si.
ILD_ECAL = CalorimeterGeometry(
    name="ild_ecal", grid="cartesian", n_x=30, n_y=30, n_layers=30,
    absorber=TUNGSTEN, absorber_mm=(2.1,) * 20 + (4.2,) * 10, active=SILICON, active_mm=0.5, other_mm=3.635,
    cell_size_mm=5.0, mip_mev=0.2, hit_threshold_mev=0.1,
    source="ILD Si-W ECAL as in OmniJet-alpha_C / CaloClouds II (30 x 30 cells of 5 mm, 30 layers)",
)  # fmt: skip

# An AHCAL-like steel-scintillator HCAL (CALICE analogue HCAL, ILD's HCAL option; docs/geometry.md):
# 48 layers of 20 mm steel (16 mm plate + 2 × 2 mm cassette walls) and 3 mm scintillator tiles of 3 × 3 cm²,
# 30 × 30 tiles (90 × 90 cm²).  A MIP's most probable loss in 3 mm polystyrene is ~0.47 MeV
# (mean 0.65 MeV); cells below half a MIP are noise, as in the CALICE analyses.
AHCAL = CalorimeterGeometry(
    name="ahcal", grid="cartesian", n_x=30, n_y=30, n_layers=48,
    absorber=IRON, absorber_mm=(20.0,) * 48, active=POLYSTYRENE, active_mm=3.0, other_mm=2.0,
    cell_size_mm=30.0, mip_mev=0.47, hit_threshold_mev=0.235,
    source="CALICE AHCAL technological prototype / ILD HCAL (48 layers, 3 x 3 cm2 tiles): JINST 15 (2020) P05004",
)  # fmt: skip

GEOMETRIES = {g.name: g for g in (ILD_ECAL, AHCAL)}


def geometry_by_name(name: str) -> CalorimeterGeometry:
    """A known geometry (:data:`GEOMETRIES`); an unknown name is a clear error."""
    if name not in GEOMETRIES:
        msg = f"unknown calorimeter geometry {name!r}; known: {sorted(GEOMETRIES)}"
        raise ValueError(msg)
    return GEOMETRIES[name]
