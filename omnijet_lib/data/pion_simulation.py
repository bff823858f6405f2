"""A parameterised charged-pion shower simulator for a steel-scintillator HCAL (the AHCAL), vectorised with numpy.

Geant4 cannot run here (docs/showers.md), so pion showers are drawn from a parameterisation in
the spirit of GFlash's hadronic showers (Grindhammer, Rudowicz, Peters, NIM A290 (1990) 469).
docs/hcal_pions.md explains the model, its numbers and what it gives; every constant is in
:class:`PionSimulationConfig` with its source.  In short, per shower:

1. the first inelastic interaction at a depth ~ Exp(1.21 λ_I) (counted in the layers' own λ_I),
   a MIP track (one Moyal hit in the entry tile per layer) in front of it, its charged
   secondaries in the layer behind; no interaction in the whole stack: a punch-through track;
2. an electromagnetic fraction f_em ~ Beta of mean 1 − (E / 1 GeV)^(−0.18) (Groom);
3. em and hadronic parts with Gamma profiles (Bock et al.) in X0 and λ_I from the interaction,
   their shapes fluctuated per shower, integrated over each layer (what lies behind leaks);
4. per layer, Gamma sampling and invisible-energy fluctuations, the MIP sampling fraction ×
   e/mip, and h/e = 1/1.2 for the hadronic part (non-compensation);
5. a Poisson number of spots per layer and part: em core and tail in Molière radii, hadronic core
   and halo widening with depth; spot energies from tables (tracks, soft deposits, fragments);
6. spots summed into the tiles (:mod:`omnijet_lib.data.spots`); every tile with energy > 0 is a hit.

What it does **not** model (docs/hcal_pions.md, "Limits"): Geant4 transport, individual hadrons
or π⁰s, a late neutron component or timing, an energy-dependent e/h, correlations between start
point and profile shapes beyond leakage, delta rays, backscatter, SiPM effects, incident angles.
No constant was fitted to Geant4 or test-beam showers: the fluctuation terms were chosen to give
σ/E ≈ 58 %/√E ⊕ 3 % after calibration for showers starting in the first ~1.2 λ_I, near CALICE's
AHCAL.  Energies outside 10–100 GeV extrapolate the parameterisations.

``PionSimulationConfig(particle="electron")`` makes electron showers in the same detector (start
at the front face, f_em = 1, GFlash's homogeneous em profile): the em-only reference for e/π.
:func:`calibration_factor` converts the visible MeV above threshold
(:func:`omnijet_lib.shower_observables.energy_sum`) to GeV; it is fitted once by simulation
(deterministic, cached).

Work is vectorised over the showers of a batch and over all spots of the batch; only batches
are looped over.  A batch's random numbers come from ``SeedSequence(seed, spawn_key=(batch,))``,
so a run is reproducible for a given ``seed`` and ``batch_size``.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.special import erfcinv, gammainc
from tqdm.auto import tqdm

from omnijet_lib.data.geometry import AHCAL, CalorimeterGeometry
from omnijet_lib.data.shower_files import reusable_shower_file, write_shower_chunks
from omnijet_lib.data.shower_simulation import homogeneous_profile
from omnijet_lib.data.showers import Showers, concatenate_showers
from omnijet_lib.data.spots import COS, OFFSET, RADIUS, SIN, TABLE_BITS, cell_buffer, hits_from_cells
from omnijet_lib.errors import check_int
from omnijet_lib.shower_observables import energy_sum

_EULER_LN2 = float(np.euler_gamma + np.log(2.0))  # Moyal: mean − mode = σ (γ + ln 2)
_COMPONENTS = 4  # spot populations per layer: em core, em tail, hadronic core, hadronic halo


@dataclass(frozen=True)
class PionSimulationConfig:
    """Physics constants of the pion simulator; each cites its source or says that it was chosen here."""

    # "pion" (default) or "electron": an electron starts showering at the front face with f_em = 1 and the
    # GFlash homogeneous em profile (SimulationConfig's constants); a reference for e/π and em-only showers.
    particle: str = "pion"

    # First inelastic interaction: depth ~ Exp(λ_π), λ_π / λ_I = 1.21 (PDG "Atomic and nuclear properties",
    # iron: pion inelastic length 160.3 g/cm² over nuclear interaction length 132.1 g/cm²).
    pion_lambda_ratio: float = 1.21

    # Electromagnetic fraction (Groom, NIM A572 (2007) 633; PDG review "Calorimetry"): <f_em> = 1 − (E/E0)^(k−1)
    # with E0 = 1 GeV and k = 0.82 for pions.  Per shower a Beta distribution of this mean and standard
    # deviation em_fraction_sigma.  Chosen: 0.15 (f_em fluctuates by ~0.1-0.15 event to event, Wigmans; the
    # upper end, which gives the constant term of ~3 % aimed at).
    em_fraction_e0_gev: float = 1.0
    em_fraction_k: float = 0.82
    em_fraction_sigma: float = 0.15

    # Non-compensation: visible energy of the hadronic part relative to the em part, h/e = 1/e_over_h.
    # Chosen: e/h = 1.2 (steel-scintillator: 1.2-1.4; CALICE AHCAL analyses quote ~1.19).
    e_over_h: float = 1.2
    # e/mip of the em part.  Chosen: 0.9 (iron-plastic samplers: slightly below 1, Wigmans "Calorimetry").
    e_over_mip: float = 0.9

    # Longitudinal profile (Bock, Hansl-Kozanecka, Shah, NIM 186 (1981) 533, fitted to iron calorimeters):
    #   em part ~ Gamma(a) in X0 with rate b;  hadronic part ~ Gamma(a) in λ_I with rate d;
    #   a = a0 + a1 ln E,  b,  d = d0 + d1 ln E  (E in GeV).
    profile_shape: tuple[float, float] = (0.6165, 0.3183)
    em_rate_per_x0: float = 0.2198
    hadron_rate_per_lambda: tuple[float, float] = (0.9099, -0.0237)
    # Per-shower fluctuation: shape_em = a exp(σ g1), shape_h = a exp(σ g2), corr(g1, g2) = ρ.
    # Chosen: σ = 0.2, ρ = 0.5 (GFlash draws its profile parameters log-normally, hep-ex/0001020).
    shape_sigma: float = 0.2
    shape_correlation: float = 0.5

    # Charged secondaries of the first interaction: the hadronic core of the layer behind it holds at least
    # Poisson(n0 + n1 ln E) spots (E in GeV).  Chosen: 4-7 for 10-100 GeV, the order of the charged-particle
    # multiplicity of pion-nucleus interactions at these energies (it grows like ln E); without it a shower
    # starting just in front of a tile could leave that tile empty.
    secondary_tracks: tuple[float, float] = (2.0, 1.0)

    # Radial profile 2rR²/(r² + R²)² (GFlash).  Em part: core and tail in Molière radii of the layer mixture,
    # weight of the core.  Chosen near GFlash's values around the maximum of an em shower (hep-ex/0001020:
    # R_C ≈ 0.2-0.3 R_M, R_T ≈ 1 R_M, core weight ≈ 0.8-0.9).
    em_core_moliere: float = 0.3
    em_tail_moliere: float = 1.0
    em_core_weight: float = 0.85
    # Hadronic part: core and halo radius [mm] = r0 + slope × (depth after the interaction [λ_I]), core weight.
    # Chosen: a core of a few cm and a halo of ~10-20 cm widening with depth; the 95 % containment radius
    # of hadron showers is ~1 λ_I (PDG "Calorimetry"), ~20 cm in the AHCAL's iron diluted by scintillator and gaps.
    hadron_core_mm: tuple[float, float] = (40.0, 10.0)
    hadron_halo_mm: tuple[float, float] = (90.0, 25.0)
    hadron_core_weight: float = 0.6
    max_radius_mm: float = 2000.0  # chosen: caps R so that cell indices stay small integers

    # Materials for the Molière radius R_M = 21.2 MeV · X0 / E_c of each layer's mixture (PDG: critical energy
    # of electrons).  A geometry whose absorber or active material is not listed is refused.
    critical_energy_mev: tuple[tuple[str, float], ...] = (
        ("iron", 21.68),
        ("polystyrene scintillator", 93.11),
        ("tungsten", 7.97),
        ("silicon", 40.19),
    )
    moliere_scale_mev: float = 21.2052  # E_s (PDG)
    # Atomic numbers (mass-weighted for compounds: polystyrene C8H8 = 0.923 · 6 + 0.077 · 1) for the electron
    # profile's GFlash parameters.
    atomic_number: tuple[tuple[str, float], ...] = (
        ("iron", 26.0),
        ("polystyrene scintillator", 5.61),
        ("tungsten", 74.0),
        ("silicon", 14.0),
    )

    # Sampling (GFlash ApplySampling: Gamma of variance a_s² E per layer).  Chosen so that the calibrated visible
    # sum of showers starting in the first ~1.2 λ_I has σ/E ≈ 58 %/√E ⊕ 3 %: em part 0.20 √GeV (iron-scintillator
    # em sampling; CALICE AHCAL positrons: ~22 %/√E), hadronic part 0.35 √GeV sampling and 0.50 √GeV invisible
    # (nuclear binding) energy, in quadrature.
    em_sampling_term: float = 0.20
    hadron_sampling_term: float = 0.35
    invisible_term: float = 0.50

    # Spots.  Chosen here.  A track spot has a Moyal energy of mode geometry.mip_mev and the mean of a MIP's
    # dE/dx_min loss in the active layer (0.65 MeV for 3 mm polystyrene); a soft spot is log-uniform in
    # [soft_min_mev, mip_mev] (Compton electrons, neutron recoils); a heavy spot log-uniform in [1, heavy_max_mip]
    # MIPs (protons and nuclear fragments).  Fractions of soft and heavy spots per part:
    em_soft_fraction: float = 0.15
    hadron_soft_fraction: float = 0.25
    hadron_heavy_fraction: float = 0.15
    heavy_max_mip: float = 20.0
    soft_min_mev: float = 0.02

    # Entry point: uniform within ± entry_spread_tiles / 2 of the grid's transverse centre.
    entry_spread_tiles: float = 1.0

    # calibration_factor: simulated once, calibration_showers at calibration_energy_gev with calibration_seed.
    # Chosen: 50 GeV, the middle of 10-100 GeV; 4000 showers (statistical error of the mean ~0.2 %).
    calibration_energy_gev: float = 50.0
    calibration_showers: int = 4000
    calibration_seed: int = 12345


# --- the detector ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layers:
    """What the simulation needs of a geometry (per layer)."""

    lambda_edges: np.ndarray  # (L + 1,) layer boundaries [λ_I] from the front
    x0_edges: np.ndarray  # (L + 1,) layer boundaries [X0]
    active_lambda: np.ndarray  # (L,) depth of the middle of each layer's active material [λ_I]
    sampling_fraction: np.ndarray  # (L,) MIP sampling fraction
    moliere_cells: np.ndarray  # (L,) Molière radius of the layer's mixture, in cells
    mm_per_cell: float
    mip_mean_mev: float  # mean MIP loss in the active layer
    mip_width_mev: float  # Moyal σ giving mode geometry.mip_mev and mean mip_mean_mev


@functools.lru_cache(maxsize=8)
def _layers(geometry: CalorimeterGeometry, config: PionSimulationConfig) -> _Layers:
    _check_geometry(geometry, config)
    g = geometry
    critical = dict(config.critical_energy_mev)
    absorber_mm = np.asarray(g.absorber_mm)
    mass_abs, mass_act = absorber_mm * g.absorber.density, g.active_mm * g.active.density  # [mm g/cm³]
    w_abs, w_act = mass_abs / (mass_abs + mass_act), mass_act / (mass_abs + mass_act)

    def moliere_mass(material) -> float:  # R_M ρ [mm g/cm³]
        return config.moliere_scale_mev * material.radiation_length_mm * material.density / critical[material.name]

    moliere_mass_mix = 1.0 / (w_abs / moliere_mass(g.absorber) + w_act / moliere_mass(g.active))
    density = (mass_abs + mass_act) / (absorber_mm + g.active_mm + g.other_mm)  # the gap dilutes the layer
    mip_mean = g.active_mm / 10 * g.active.density * g.active.dedx_min  # MeV
    if mip_mean <= g.mip_mev:
        msg = f"geometry {g.name!r}: mip_mev {g.mip_mev} must lie below the mean MIP loss {mip_mean:.3f} MeV"
        raise ValueError(msg)
    return _Layers(
        lambda_edges=np.concatenate([[0.0], np.cumsum(g.layer_lambda)]),
        x0_edges=np.concatenate([[0.0], np.cumsum(g.layer_x0)]),
        active_lambda=g.layer_depth_lambda,
        sampling_fraction=g.mip_sampling_fraction,
        moliere_cells=moliere_mass_mix / density / g.cell_size_mm,
        mm_per_cell=g.cell_size_mm,
        mip_mean_mev=float(mip_mean),
        mip_width_mev=float((mip_mean - g.mip_mev) / _EULER_LN2),
    )


def _check_geometry(geometry: CalorimeterGeometry, config: PionSimulationConfig) -> None:
    if not isinstance(geometry, CalorimeterGeometry):
        msg = f"geometry must be a CalorimeterGeometry; got {type(geometry).__name__}"
        raise TypeError(msg)
    if geometry.grid != "cartesian":
        msg = f"the pion simulator needs a Cartesian geometry; {geometry.name!r} is {geometry.grid}"
        raise ValueError(msg)
    if geometry.mip_mev <= 0:
        msg = f"geometry {geometry.name!r} has no MIP energy (mip_mev = {geometry.mip_mev})"
        raise ValueError(msg)
    for table in ("critical_energy_mev", "atomic_number"):
        known = dict(getattr(config, table))
        for material in (geometry.absorber, geometry.active):
            if material.name not in known:
                msg = f"no {table} for material {material.name!r} in the config (known: {sorted(known)})"
                raise ValueError(msg)
    if config.particle not in ("pion", "electron"):
        msg = f"particle must be 'pion' or 'electron'; got {config.particle!r}"
        raise ValueError(msg)
    if geometry.n_cells >= 1 << 24:
        msg = f"geometry {geometry.name!r} has {geometry.n_cells} cells; the simulator handles fewer than 2^24"
        raise ValueError(msg)


# --- spot energies --------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _spot_tables(geometry: CalorimeterGeometry, config: PionSimulationConfig) -> tuple[np.ndarray, np.ndarray]:
    """Quantiles (3, 2^16) float32 [MeV] of the track (pure Moyal), em and hadronic spot energies; their means (3,)."""
    layers, c = _layers(geometry, config), config
    n = 1 << TABLE_BITS
    mip = geometry.mip_mev

    def moyal(m: int) -> np.ndarray:  # F(x) = erfc(exp(−λ/2)/√2), λ = (x − μ)/σ  =>  λ = −2 ln(√2 erfcinv(u))
        u = (np.arange(m) + 0.5) / m
        return mip - layers.mip_width_mev * 2.0 * np.log(np.sqrt(2.0) * erfcinv(u))

    def log_uniform(m: int, low: float, high: float) -> np.ndarray:
        return low * (high / low) ** ((np.arange(m) + 0.5) / max(m, 1))

    def mixture(soft: float, heavy: float) -> np.ndarray:
        n_soft, n_heavy = round(soft * n), round(heavy * n)
        parts = [
            moyal(n - n_soft - n_heavy),
            log_uniform(n_soft, c.soft_min_mev, mip),
            log_uniform(n_heavy, mip, c.heavy_max_mip * mip),
        ]
        return np.concatenate(parts)

    tables = np.stack(
        [moyal(n), mixture(c.em_soft_fraction, 0.0), mixture(c.hadron_soft_fraction, c.hadron_heavy_fraction)]
    )
    tables = np.clip(tables, c.soft_min_mev, None).astype(np.float32)
    return tables, tables.astype(np.float64).mean(axis=1)


# --- the parameterisation, vectorised over a batch of showers -------------------------------------


def em_fraction(energy_gev: np.ndarray, config: PionSimulationConfig = PionSimulationConfig()) -> np.ndarray:
    """Mean electromagnetic fraction of pion showers, 1 − (E/E0)^(k−1) (Groom), clipped to [0.01, 0.99]."""
    mean = 1.0 - (np.asarray(energy_gev) / config.em_fraction_e0_gev) ** (config.em_fraction_k - 1.0)
    return np.clip(mean, 0.01, 0.99)


def _electron_profile(energy_gev: np.ndarray, rng: np.random.Generator, geometry: CalorimeterGeometry, config):
    """Shape α and rate β [/X0] of GFlash's homogeneous em profile in the first layer's mixture (electrons)."""
    critical, atomic_number = dict(config.critical_energy_mev), dict(config.atomic_number)
    absorber, active = geometry.absorber, geometry.active
    mass_abs, mass_act = geometry.absorber_mm[0] * absorber.density, geometry.active_mm * active.density
    w = mass_abs / (mass_abs + mass_act)  # mass fractions w, 1 − w (hep-ex/0001020: the effective medium)
    z_eff = w * atomic_number[absorber.name] + (1 - w) * atomic_number[active.name]
    x0_abs, x0_act = absorber.radiation_length_mm * absorber.density, active.radiation_length_mm * active.density
    x0_mass = 1 / (w / x0_abs + (1 - w) / x0_act)
    ec = x0_mass * (w * critical[absorber.name] / x0_abs + (1 - w) * critical[active.name] / x0_act)
    t_max, alpha = homogeneous_profile(energy_gev, rng, z_eff=z_eff, critical_mev=ec)
    return alpha, (alpha - 1) / t_max


def _simulate_batch(
    energy_gev: np.ndarray,
    rng: np.random.Generator,
    geometry: CalorimeterGeometry,
    config: PionSimulationConfig,
    cells: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The hits of pions of ``energy_gev`` (B,): rows (K, 4) float32 and hits per shower (B,).

    Rows are x, y, z, E, shower after shower, most energetic first.  ``cells`` is a zeroed float32
    work buffer of at least B · n_cells + 1 cells; it is left zeroed.
    """
    c, g = config, geometry
    layers = _layers(g, c)
    tables, spot_means = _spot_tables(g, c)
    b, n_layers, n_cells = len(energy_gev), g.n_layers, g.n_cells
    e = energy_gev[:, None]  # (B, 1)
    ln_e = np.log(energy_gev)

    # 1. start point [λ_I] and the track in front of it
    if c.particle == "pion":
        start = rng.exponential(c.pion_lambda_ratio, b)
        f_em = _draw_em_fraction(energy_gev, rng, c)
        shape = c.profile_shape[0] + c.profile_shape[1] * ln_e
        g1, g2 = rng.standard_normal((2, b))
        g2 = c.shape_correlation * g1 + np.sqrt(1 - c.shape_correlation**2) * g2
        alpha_em, alpha_h = shape * np.exp(c.shape_sigma * g1), shape * np.exp(c.shape_sigma * g2)
        beta_em = np.full(b, c.em_rate_per_x0)
        beta_h = c.hadron_rate_per_lambda[0] + c.hadron_rate_per_lambda[1] * ln_e
    else:
        start, f_em = np.zeros(b), np.ones(b)
        alpha_em, beta_em = _electron_profile(energy_gev, rng, g, c)
        alpha_h, beta_h = np.full(b, 2.0), np.ones(b)
    track = layers.active_lambda < start[:, None]  # (B, L)
    start_x0 = np.interp(start, layers.lambda_edges, layers.x0_edges)  # beyond the last layer: its end

    # 2.-3. deposited energy per layer [GeV]: Gamma profiles from the start, integrated over each layer
    after_x0 = np.maximum(layers.x0_edges - start_x0[:, None], 0.0)  # (B, L + 1)
    after_lambda = np.maximum(layers.lambda_edges - start[:, None], 0.0)
    profile_em = np.diff(gammainc(alpha_em[:, None], beta_em[:, None] * after_x0), axis=1)
    profile_h = np.diff(gammainc(alpha_h[:, None], beta_h[:, None] * after_lambda), axis=1)
    deposited_em = e * f_em[:, None] * np.maximum(profile_em, 0.0)  # (B, L)
    deposited_h = e * (1 - f_em[:, None]) * np.maximum(profile_h, 0.0)

    # 4. sampling fluctuations (Gamma of variance a² E; 0 stays 0) and visible energy [MeV]
    a_em2 = c.em_sampling_term**2
    a_h2 = c.hadron_sampling_term**2 + c.invisible_term**2
    mev = layers.sampling_fraction * c.e_over_mip * 1e3  # (L,) visible MeV per deposited GeV (em)
    visible_em = rng.gamma(deposited_em / a_em2, a_em2) * mev
    visible_h = rng.gamma(deposited_h / a_h2, a_h2) * (mev / c.e_over_h)

    # 5. spots: four populations per layer (em core, em tail, hadronic core, hadronic halo)
    depth = np.maximum(layers.active_lambda - start[:, None], 0.0)  # (B, L) after the interaction [λ_I]
    per_cell = 1.0 / layers.mm_per_cell
    radius = np.stack(
        [
            np.broadcast_to(c.em_core_moliere * layers.moliere_cells, (b, n_layers)),
            np.broadcast_to(c.em_tail_moliere * layers.moliere_cells, (b, n_layers)),
            (c.hadron_core_mm[0] + c.hadron_core_mm[1] * depth) * per_cell,
            (c.hadron_halo_mm[0] + c.hadron_halo_mm[1] * depth) * per_cell,
        ],
        axis=-1,
    )  # (B, L, 4) [cells]
    radius = np.minimum(radius, c.max_radius_mm * per_cell).astype(np.float32)
    share = np.stack(
        [
            visible_em * c.em_core_weight,
            visible_em * (1 - c.em_core_weight),
            visible_h * c.hadron_core_weight,
            visible_h * (1 - c.hadron_core_weight),
        ],
        axis=-1,
    )
    table_of = np.array([1, 1, 2, 2])  # spot-energy table of each population
    counts = rng.poisson(share / spot_means[table_of])  # (B, L, 4)
    if c.particle == "pion":  # the charged secondaries of the first interaction cross the next scintillator
        layer = track.sum(axis=1)  # (B,) the layer behind the interaction; n_layers: no interaction
        hit = np.flatnonzero(layer < n_layers)
        secondaries = rng.poisson(c.secondary_tracks[0] + c.secondary_tracks[1] * ln_e[hit])
        counts[hit, layer[hit], 2] = np.maximum(counts[hit, layer[hit], 2], secondaries)
    counts = counts.ravel()  # (B · L · 4,)

    half = c.entry_spread_tiles / 2
    entry = (np.array([g.n_x, g.n_y])[:, None] / 2 + OFFSET + rng.uniform(-half, half, (2, b))).astype(np.float32)
    # Flat cell index shower · n_cells + x · (n_y · L) + y · L + layer, less what OFFSET adds to x and y.
    stride_x = g.n_y * n_layers
    first = np.arange(b)[:, None] * n_cells + np.arange(n_layers) - OFFSET * (stride_x + n_layers)  # (B, L)
    per_population = np.repeat(first.astype(np.int64).ravel(), _COMPONENTS)
    base = np.repeat(per_population, counts)
    x0 = np.repeat(np.repeat(entry[0], n_layers * _COMPONENTS), counts)
    y0 = np.repeat(np.repeat(entry[1], n_layers * _COMPONENTS), counts)
    scale = np.repeat(radius.ravel(), counts)
    offset = np.repeat(np.tile((table_of << TABLE_BITS).astype(np.int32), b * n_layers), counts)

    n_spots = len(base)
    words = rng.bit_generator.random_raw(n_spots).view(np.uint16)  # (4 S,): energy, radius, azimuth, unused
    energy = np.take(tables.ravel(), words[:n_spots] + offset)
    r = scale * np.take(RADIUS, words[n_spots : 2 * n_spots])
    azimuth = words[2 * n_spots : 3 * n_spots]
    ix = (x0 + r * np.take(COS, azimuth)).astype(np.int32)  # truncation = floor: all positions > 0
    iy = (y0 + r * np.take(SIN, azimuth)).astype(np.int32)
    inside = ((ix - OFFSET).view(np.uint32) < g.n_x) & ((iy - OFFSET).view(np.uint32) < g.n_y)
    key = np.where(inside, base + ix.astype(np.int64) * stride_x + iy * n_layers, b * n_cells)  # leak: last

    # 1. (cont.) the track: one Moyal MIP in the entry tile of each layer in front of the interaction
    shower, layer = np.nonzero(track)
    entry_x = entry[0, shower].astype(np.int64) - OFFSET  # the entry tile (positions > 0: truncation = floor)
    entry_y = entry[1, shower].astype(np.int64) - OFFSET
    track_key = shower * n_cells + entry_x * stride_x + entry_y * n_layers + layer
    track_energy = np.take(tables[0], rng.integers(0, 1 << TABLE_BITS, len(shower)))

    # 6. cells: sum the spots (in order: float32 sums are reproducible), keep every cell > 0
    cells = cells[: b * n_cells + 1]
    np.add.at(cells, key, energy)
    np.add.at(cells, track_key, track_energy)
    cells[-1] = 0.0  # the spots outside the grid
    return hits_from_cells(cells, b, g.shape)


def _draw_em_fraction(energy_gev: np.ndarray, rng: np.random.Generator, config: PionSimulationConfig) -> np.ndarray:
    """f_em per shower: Beta of mean <f_em> and standard deviation em_fraction_sigma (at most what a Beta allows)."""
    mean = em_fraction(energy_gev, config)
    concentration = np.maximum(mean * (1 - mean) / config.em_fraction_sigma**2 - 1.0, 1.0)
    return rng.beta(mean * concentration, (1 - mean) * concentration)


def _batch_showers(task: tuple) -> Showers:
    """Simulate batch ``batch`` of a run as :class:`Showers` padded to its widest shower (or ``max_hits``)."""
    seed, batch, energies, low_high, geometry, config, max_hits = task
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(batch,)))
    if energies is None:
        low, high, size = low_high
        energies = rng.uniform(low, high, size) if high > low else np.full(size, float(low))
    energies = np.asarray(energies, dtype=np.float64)
    cells = cell_buffer(len(energies) * geometry.n_cells + 1)
    rows, n_hits = _simulate_batch(energies, rng, geometry, config, cells)
    width = int(n_hits.max()) if max_hits is None else max_hits
    shower = np.repeat(np.arange(len(energies)), n_hits)
    rank = np.arange(len(rows)) - np.repeat(np.cumsum(n_hits) - n_hits, n_hits)
    keep = rank < width  # the most energetic max_hits cells of a shower
    hits = np.zeros((len(energies), width, 4), dtype=np.float32)
    hits.reshape(-1, 4)[shower[keep] * width + rank[keep]] = rows[keep]
    return Showers(hits, energies.astype(np.float32), geometry)


def _check_request(n, energy, batch_size, geometry, config, max_hits) -> tuple[np.ndarray | None, float, float]:
    """Validate a request; returns per-shower energies (or None) and the range (low, high) [GeV]."""
    for name, value in (("n", n), ("batch_size", batch_size), ("max_hits", 1 if max_hits is None else max_hits)):
        check_int(value, name, minimum=1)
    if not isinstance(config, PionSimulationConfig):
        msg = f"config must be a PionSimulationConfig; got {type(config).__name__}"
        raise TypeError(msg)
    _check_geometry(geometry, config)
    if batch_size >= 1 << max(0, 31 - int(geometry.n_cells - 1).bit_length()):
        msg = f"batch_size {batch_size} is too large for geometry {geometry.name!r} (one sort key per cell)"
        raise ValueError(msg)
    what = "energy must be a positive number [GeV], a range (low, high) or an array of n energies"
    if isinstance(energy, np.ndarray) and energy.ndim == 1:
        values = energy
        if len(values) != n:
            msg = f"{what}; got an array of {len(values)} energies for n = {n}"
            raise ValueError(msg)
    elif np.isscalar(energy) or (isinstance(energy, np.ndarray) and energy.ndim == 0):
        values = np.array([energy])
    elif isinstance(energy, (tuple, list)) and len(energy) == 2:
        values = np.array(energy)
    else:
        msg = f"{what}; got {energy!r}"
        raise ValueError(msg)
    if values.dtype.kind not in "iuf" or not np.all(np.isfinite(values)) or np.any(values <= 0):
        msg = f"{what}, finite and > 0; got {energy!r}" if values.size < 10 else f"{what}, all finite and > 0"
        raise ValueError(msg)
    values = values.astype(np.float64)
    if isinstance(energy, np.ndarray) and energy.ndim == 1:
        return values, float(values.min()), float(values.max())
    low, high = float(values[0]), float(values[-1])
    if low > high:
        msg = f"an energy range must have low <= high [GeV]; got {energy!r}"
        raise ValueError(msg)
    return None, low, high


def iter_pion_batches(
    n: int,
    *,
    energy: float | tuple[float, float] | np.ndarray = (10.0, 100.0),
    seed: int = 0,
    batch_size: int = 256,
    geometry: CalorimeterGeometry = AHCAL,
    config: PionSimulationConfig = PionSimulationConfig(),
    max_hits: int | None = None,
    progress: bool = True,
) -> Iterator[Showers]:
    """:func:`simulate_pions` one batch of ``batch_size`` showers at a time (for runs larger than memory).

    Each batch is padded to its own widest shower (or ``max_hits``); concatenated
    (:func:`omnijet_lib.data.showers.concatenate_showers`) they are ``simulate_pions(n, ...)``.
    """
    values, low, high = _check_request(n, energy, batch_size, geometry, config, max_hits)
    with tqdm(total=n, desc="simulating pions", unit="shower", disable=not progress) as bar:
        for batch, start in enumerate(range(0, n, batch_size)):
            size = min(batch_size, n - start)
            energies = None if values is None else values[start : start + size]
            showers = _batch_showers((seed, batch, energies, (low, high, size), geometry, config, max_hits))
            bar.update(size)
            yield showers


def simulate_pions(
    n: int,
    *,
    energy: float | tuple[float, float] | np.ndarray = (10.0, 100.0),
    seed: int = 0,
    batch_size: int = 256,
    geometry: CalorimeterGeometry = AHCAL,
    config: PionSimulationConfig = PionSimulationConfig(),
    max_hits: int | None = None,
    progress: bool = True,
) -> Showers:
    """Simulate ``n`` charged-pion showers in ``geometry`` (the AHCAL; the model: see the module docstring).

    ``energy`` [GeV] is a fixed energy, a range (low, high) drawn from uniformly, or an array of
    ``n`` energies, one per shower.  Hits are the tiles with visible energy > 0 [MeV] (also below
    ``geometry.hit_threshold_mev``), sorted by energy, descending, and padded with zeros to the
    widest shower (or cut to the ``max_hits`` most energetic).  x, y, z are integer cell indices as
    float32.  The showers depend on ``seed`` and ``batch_size`` only.  Multiply a shower's visible
    sum above threshold by :func:`calibration_factor` to estimate its energy in GeV.
    """
    batches = iter_pion_batches(
        n, energy=energy, seed=seed, batch_size=batch_size, geometry=geometry, config=config,
        max_hits=max_hits, progress=progress,
    )  # fmt: skip
    return concatenate_showers(list(batches))


def simulate_pion_file(
    path: str | os.PathLike,
    n: int,
    *,
    energy: float | tuple[float, float] | np.ndarray = (10.0, 100.0),
    seed: int = 0,
    batch_size: int = 256,
    geometry: CalorimeterGeometry = AHCAL,
    config: PionSimulationConfig = PionSimulationConfig(),
    max_hits: int | None = None,
    progress: bool = True,
) -> Path:
    """Simulate ``n`` pion showers into a new shower file at ``path`` (written batch by batch, atomically).

    The file stores the geometry and, as provenance, the generator, seed, batch size, energies and
    the whole :class:`PionSimulationConfig`.  Returns the path.
    """
    values, low, high = _check_request(n, energy, batch_size, geometry, config, max_hits)
    provenance = {
        "generator": "omnijet parameterised pion-shower simulator (omnijet_lib.data.pion_simulation)",
        "seed": seed, "batch_size": batch_size, "max_hits_simulated": -1 if max_hits is None else max_hits,
        "incident_energy_gev": [low, high], "incident_energy": "per shower" if values is not None else "uniform",
        "simulation_config": json.dumps(asdict(config)),
    }  # fmt: skip
    batches = iter_pion_batches(
        n, energy=energy, seed=seed, batch_size=batch_size, geometry=geometry, config=config,
        max_hits=max_hits, progress=progress,
    )  # fmt: skip
    return write_shower_chunks(path, batches, provenance=provenance, geometry=geometry)


def pion_dataset(
    n_showers: int,
    *,
    seed: int,
    energy: float | tuple[float, float] = (10.0, 100.0),
    particle: str = "pion",
    data_dir: str | os.PathLike = "data/pions",
    progress: bool = True,
) -> Path:
    """The file of ``n_showers`` simulated showers in the AHCAL, simulated once and then reused.

    Kept as ``data_dir/<particle>s_<energy>GeV_<n>_seed<seed>.h5`` (``particle``: "pion" or
    "electron"), written batch by batch and atomically by :func:`simulate_pion_file`.  A file of
    that name holding another number of showers is an error rather than silently reused.
    """
    config = PionSimulationConfig(particle=particle)
    _, low, high = _check_request(n_showers, energy, 256, AHCAL, config, None)
    label = f"{low:g}" if low == high else f"{low:g}-{high:g}"
    path = Path(data_dir) / f"{particle}s_{label}GeV_{n_showers}_seed{seed}.h5"
    if reusable_shower_file(path, n_showers):
        return path
    return simulate_pion_file(path, n_showers, energy=(low, high), seed=seed, config=config, progress=progress)


@functools.lru_cache(maxsize=8)
def calibration_factor(
    geometry: CalorimeterGeometry = AHCAL, config: PionSimulationConfig = PionSimulationConfig()
) -> float:
    """GeV of incident energy per MeV of visible energy above threshold, for pions of this config.

    Fitted once by simulation (deterministic, cached per geometry and config):
    ``config.calibration_showers`` showers at ``config.calibration_energy_gev`` with
    ``config.calibration_seed``; the factor is E / mean visible sum.  Punch-through pions count
    as they come (a test beam cannot remove them without biasing).
    """
    _check_geometry(geometry, config)
    energy = config.calibration_energy_gev
    showers = simulate_pions(
        config.calibration_showers, energy=energy, seed=config.calibration_seed, batch_size=500,
        geometry=geometry, config=config, progress=False,
    )  # fmt: skip
    return float(energy / energy_sum(showers).mean())
