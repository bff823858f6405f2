"""A parameterised (GFlash) photon-shower simulator for the ILD-like Si-W ECAL, vectorised with numpy.

Geant4 cannot run here (docs/showers.md), so photon showers are drawn from the Grindhammer–Peters
parameterisation of electromagnetic showers in sampling calorimeters (hep-ex/0001020, "GFlash")
with the constants of Geant4's own GFlash tables (``GVFlashHomoShowerTuning``,
``GFlashSamplingShowerTuning``, used as ``GFlashSamplingShowerParameterisation`` uses them).
A shower is made in five steps:

1. **Entry and conversion.**  The photon enters at z = 0 at normal incidence, uniformly within
   ± half a cell of the x-y centre of the 30 × 30 grid (the corner of cells 14 and 15), and
   converts after an exponential depth of mean 9/7 X0 (GFlash ``GenerateExponential``).
2. **Longitudinal profile.**  From the conversion point on, the deposited energy follows a Gamma
   distribution in depth t [X0]: dE/dt = E β^α t^(α−1) e^(−βt)/Γ(α), T = (α − 1)/β the depth of the
   maximum.  ln T and ln α are drawn per shower from a correlated bivariate normal whose means,
   widths and correlation depend on ln y, y = E/E_c (the sampling-calorimeter parameterisation:
   the homogeneous means shifted by the sampling frequency F_S and ê).  A layer's energy is the
   integral of the profile over its depth in X0 (0.605 X0 for layers 1–20, 1.205 X0 for 21–30).
3. **Sampling.**  The energy deposited in a layer is fluctuated with a Gamma distribution of
   variance a_s² E (GFlash ``ApplySampling``) and multiplied by the layer's sampling fraction
   (ê × the silicon share of a minimum-ionising particle's energy loss: 2.8 % in layers 1–20,
   1.4 % in 21–30): the visible energy.
4. **Spots.**  The visible energy of a layer is split into the GFlash core (weight p) and tail
   (1 − p), each carried by a Poisson number of spots at a radius drawn from
   2rR²/(r² + R²)² with R = R_C or R_T (depending on E and τ = t/T, in Molière radii of the
   layer's W + Si + gap mixture) and a uniform azimuth around the shower axis.  A core spot is a
   charged track crossing the silicon (a Moyal energy around a MIP, sometimes a soft deposit);
   a tail spot a soft photon's Compton or photo-electron (log-uniform up to 1 MeV).  The Poisson
   counts and the spread of spot energies add the statistical sampling fluctuations to step 3.
5. **Cells.**  Spots are summed into the 5 × 5 mm cells of the 30 × 30 × 30 grid.  Every cell with
   energy > 0 is a hit, also below :data:`HIT_THRESHOLD_MEV`, so that the cell-energy spectrum
   shows the sub-threshold region.

What it does **not** model: no Geant4 and no transport of secondary particles (the profiles are
GFlash averages with parameterised fluctuations); a photon is an electron of the same energy
starting at its conversion point (the e⁺e⁻ pair is not split); the shower maximum's parameters
use the thin-W section's medium for the whole shower; no backscatter; no cell staggering
between layers (the real geometry shifts layers slightly); no guard rings or dead areas; the
passive material besides W and Si (PCB, glue, carbon fibre, air) only widens the shower, it
holds no X0 and no energy; no electronics (no noise, no ADC saturation, no timing); no
incident-angle or position dependence beyond the offset within the central cells.  Energy
outside the 30 × 30 window (± 75 mm) or behind layer 30 is lost (leakage), as in the real
grid.  The raw (unweighted) visible sum, ~23 MeV per GeV, has the sampling structure's large
constant term (σ/E ≈ 9 % at all energies) and is ~10 % sublinear over 10–100 GeV: layers 21–30
see half the sampling fraction of layers 1–20, so a late conversion or a deep shower loses
visible energy.  Weighting layers by 1/sampling fraction (:func:`layer_media`) gives a linear
estimate of E with σ/E ≈ 16 %/√E ⊕ 1.5 %.  GFlash's R_T grows without bound at large τ: radii
are capped at the grid's width (30 cells).

Work is vectorised over the showers of a batch and over all spots of the batch; only batches
are looped over.  A batch's random numbers come from ``SeedSequence(seed, spawn_key=(batch,))``,
so a run is reproducible for a given ``seed`` and ``batch_size`` (and batches could run in parallel).
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

from omnijet_lib.data.shower_files import reusable_shower_file, write_shower_chunks
from omnijet_lib.data.showers import ABSORBER_MM, CELL_SIZE_MM, GRID_SIZE, MIP_MEV, N_LAYERS, SILICON_MM, Showers
from omnijet_lib.data.spots import COS, OFFSET, RADIUS, SIN, TABLE_BITS, cell_buffer, hits_from_cells
from omnijet_lib.errors import check_int

_CELLS_PER_SHOWER = GRID_SIZE * GRID_SIZE * N_LAYERS  # flat cell index: x · 900 + y · 30 + layer


@dataclass(frozen=True)
class SimulationConfig:
    """Physics constants of the simulator; each cites its source or says that it was chosen here."""

    # Materials (PDG "Atomic and nuclear properties"; X0, R_M and E_c of W as in docs/showers.md).
    tungsten_z: float = 74.0
    tungsten_density: float = 19.3  # g/cm³
    tungsten_x0_mm: float = 3.5  # radiation length
    tungsten_moliere_mm: float = 9.3  # Molière radius
    tungsten_critical_mev: float = 8.0  # critical energy (PDG, e⁻: 7.97 MeV)
    tungsten_dedx_min: float = 1.145  # MeV cm²/g, minimum ionisation
    silicon_z: float = 14.0
    silicon_density: float = 2.329
    silicon_x0_mm: float = 93.7
    silicon_moliere_mm: float = 48.8  # PDG: 4.944 cm
    silicon_critical_mev: float = 40.19
    silicon_dedx_min: float = 1.664
    # Material per layer besides W and 0.5 mm Si (PCB, glue, carbon fibre, air), as thickness only.  From
    # the ILD Si layer positions in CaloClouds II (utils/plotting.py, layer_bottom_pos): mean pitch 6.235 mm
    # with 2.1 mm W, 8.335 mm with 4.2 mm W, i.e. 4.135 mm besides the W in both sections.
    gap_mm: float = 3.635

    # Photon conversion: depth of the first interaction ~ Exp(9/7 X0) (pair production's mean free path;
    # GFlashSamplingShowerParameterisation::GenerateExponential).
    conversion_mean_x0: float = 9.0 / 7.0

    # Longitudinal profile, homogeneous media (hep-ex/0001020; GVFlashHomoShowerTuning ParAveT1, ParAveA1..3):
    #   T_hom = ln y + t1,  α_hom = a1 + (a2 + a3/Z) ln y,  y = E/E_c
    t_hom: float = -0.812
    alpha_hom: tuple[float, float, float] = (0.81, 0.458, 2.26)
    # Sampling calorimeters (GFlashSamplingShowerTuning ParsAveT1, ParsAveT2, ParsAveA1):
    #   <ln T> = ln(T_hom + t1/F_S + t2 (1 − ê)),  <ln α> = ln(α_hom + a1/F_S)
    t_sam: tuple[float, float] = (-0.55, -0.69)
    alpha_sam: float = -0.476
    # Fluctuations (ParsSigLogT1, 2; ParsSigLogA1, 2; ParsRho1, 2):
    #   σ(ln T) = 1/(s1 + s2 ln y),  σ(ln α) = 1/(s1 + s2 ln y),  ρ(ln T, ln α) = r1 + r2 ln y
    sigma_log_t: tuple[float, float] = (-2.5, 1.25)
    sigma_log_alpha: tuple[float, float] = (-0.82, 0.79)
    correlation: tuple[float, float] = (0.784, -0.023)
    ehat_slope: float = 0.007  # ê = e/mip = 1/(1 + 0.007 (Z_passive − Z_active)) (hep-ex/0001020)

    # Radial profile, homogeneous media (GVFlashHomoShowerTuning), radii in Molière radii, τ = t/T, E in GeV:
    #   R_C = c1 + c2 ln E + (c3 + c4 Z) τ                                     (ParRC1..4)
    #   R_T = (k1 + k2 Z) (exp(k4 (τ − k3)) + exp((k5 + k6 ln E)(τ − k3)))    (ParRT1..6)
    #   p   = p1 exp(x − e^x),  x = (p2 − τ)/p3,  p1 = w1 + w2 Z,  p2 = w3 + w4 Z,  p3 = w5 + w6 ln E  (ParWC1..6)
    core_radius: tuple[float, float, float, float] = (0.0251, 0.00319, 0.1162, -0.000381)
    tail_radius: tuple[float, float, float, float, float, float] = (0.659, -0.00309, 0.645, -2.59, 0.3585, 0.0412)
    core_weight: tuple[float, float, float, float, float, float] = (2.632, -0.00094, 0.401, 0.00187, 1.313, -0.0686)
    # Sampling corrections (GFlashSamplingShowerTuning ParsRC1, 2; ParsRT1, 2; ParsWC1, 2):
    #   R_C += c1 (1 − ê) + c2/F_S e^−τ,  R_T += t1 (1 − ê) + t2/F_S e^−τ,  p += (1 − ê)(w1 + w2/F_S e^−(τ−1)²)
    core_radius_sam: tuple[float, float] = (-0.0203, 0.0397)
    tail_radius_sam: tuple[float, float] = (-0.14, -0.495)
    core_weight_sam: tuple[float, float] = (0.348, -0.642)

    # Sampling fluctuations: GFlash's ApplySampling draws a step's deposited energy from a Gamma of variance
    # a_s² E.  Chosen: a_s = 0.12 √GeV, so that with the spot statistics the layer-weighted energy sum has
    # σ/E ≈ 16 %/√E ⊕ 1.5 %, near the CALICE Si-W prototype's 16.5 %/√E ⊕ 1.1 % (NIM A 608 (2009) 372).
    # (GFlashSamplingShowerTuning's SamplingResolution, 0.11, is meant as the whole stochastic term.)
    sampling_term: float = 0.12
    # Sampling fraction of layer l = scale × ê × the silicon share of a MIP's energy loss (dE/dx above):
    # 2.8 % for 2.1 mm W, 1.4 % for 4.2 mm W.  Chosen: scale 1, giving ~1.15 GeV visible at 50 GeV and
    # energy sums of 0.25–2.25 GeV for 10–100 GeV, as CaloClouds II's plots of the ILD data span (20–2200 MeV).
    sampling_fraction_scale: float = 1.0

    # Spots.  Chosen here (GFlash's spots all carry the same energy; these are no published constants).
    # A core spot is a charged track crossing the silicon: Moyal (Landau approximation) energy of mode
    # mip_mpv · MIP and width landau_width · MIP, or, with probability core_soft_fraction, a soft deposit
    # (log-uniform in [soft_min_mev, MIP]).  A tail spot is a soft photon's Compton or photo-electron:
    # log-uniform in [soft_min_mev, tail_max_mev], 57 % of them below the 0.1 MeV threshold.
    mip_mpv: float = 1.0  # × MIP_MEV = 0.2 MeV: 0.5 mm Si, tracks crossing at the angles of a shower
    landau_width: float = 0.15  # × MIP_MEV; wider than ξ ≈ 9 keV of a straight track, for the angles
    core_soft_fraction: float = 0.1
    soft_min_mev: float = 0.005
    tail_max_mev: float = 1.0

    # Entry point: uniform within ± entry_spread_cells / 2 of the grid centre.  Chosen: one cell.
    entry_spread_cells: float = 1.0


# --- the detector: each layer's W + Si + gap as GFlash's effective medium -------------------------


@dataclass(frozen=True)
class LayerMedia:
    """Effective medium of each of the 30 layers (hep-ex/0001020: mass-weighted Z, 1/X0, E_c/X0, 1/R_M)."""

    depth_x0: np.ndarray  # (31,) layer boundaries [X0] from the front face; the silicon sits at the back
    z_eff: np.ndarray  # (30,) effective atomic number
    moliere_mm: np.ndarray  # (30,) effective Molière radius, stretched by the gap
    sampling_frequency: np.ndarray  # (30,) F_S = X0_eff / (d_W + d_Si), in mass
    sampling_fraction: np.ndarray  # (30,) visible / deposited energy
    ehat: float  # e/mip
    critical_mev: float  # effective critical energy of layers 1-20 (where the shower maximum lies)


@functools.lru_cache(maxsize=8)
def layer_media(config: SimulationConfig = SimulationConfig()) -> LayerMedia:
    """The effective medium of every layer; ``sampling_fraction`` calibrates cell energies layer by layer."""
    c = config
    mass_w = ABSORBER_MM * c.tungsten_density  # (30,) mass per area [mm g/cm³]
    mass_si = np.full_like(mass_w, SILICON_MM * c.silicon_density)
    w_w, w_si = mass_w / (mass_w + mass_si), mass_si / (mass_w + mass_si)
    x0_mass = 1.0 / (w_w / (c.tungsten_x0_mm * c.tungsten_density) + w_si / (c.silicon_x0_mm * c.silicon_density))
    rm_mass = 1.0 / (
        w_w / (c.tungsten_moliere_mm * c.tungsten_density) + w_si / (c.silicon_moliere_mm * c.silicon_density)
    )
    ec_over_x0 = w_w * c.tungsten_critical_mev / (c.tungsten_x0_mm * c.tungsten_density) + (
        w_si * c.silicon_critical_mev / (c.silicon_x0_mm * c.silicon_density)
    )
    density = (mass_w + mass_si) / (ABSORBER_MM + SILICON_MM + c.gap_mm)  # the gap dilutes the layer
    ehat = 1.0 / (1.0 + c.ehat_slope * (c.tungsten_z - c.silicon_z))
    loss_si = SILICON_MM * c.silicon_density * c.silicon_dedx_min
    loss_w = ABSORBER_MM * c.tungsten_density * c.tungsten_dedx_min
    return LayerMedia(
        depth_x0=np.concatenate([[0.0], np.cumsum((mass_w + mass_si) / x0_mass)]),
        z_eff=w_w * c.tungsten_z + w_si * c.silicon_z,
        moliere_mm=rm_mass / density,
        sampling_frequency=x0_mass / (mass_w + mass_si),
        sampling_fraction=c.sampling_fraction_scale * ehat * loss_si / (loss_si + loss_w),
        ehat=ehat,
        critical_mev=float(x0_mass[0] * ec_over_x0[0]),
    )


@functools.lru_cache(maxsize=8)
def _spot_energy_tables(config: SimulationConfig) -> tuple[np.ndarray, float, float]:
    """Quantiles (2, 2^16) float32 [MeV] of the core and tail spot energies, and the two means."""
    n = 1 << TABLE_BITS
    n_soft = round(config.core_soft_fraction * n)
    u = (np.arange(n - n_soft) + 0.5) / (n - n_soft)
    # Moyal quantile: F(x) = erfc(exp(−λ/2)/√2), λ = (x − μ)/σ  =>  λ = −2 ln(√2 erfcinv(u))
    crossing = MIP_MEV * (config.mip_mpv - config.landau_width * 2.0 * np.log(np.sqrt(2.0) * erfcinv(u)))
    soft = config.soft_min_mev * (MIP_MEV / config.soft_min_mev) ** ((np.arange(n_soft) + 0.5) / max(n_soft, 1))
    core = np.clip(np.concatenate([crossing, soft]), config.soft_min_mev, None)
    tail = config.soft_min_mev * (config.tail_max_mev / config.soft_min_mev) ** ((np.arange(n) + 0.5) / n)
    tables = np.stack([core, tail]).astype(np.float32)
    return tables, float(tables[0].mean()), float(tables[1].mean())


# --- the parameterisation, vectorised over a batch of showers -------------------------------------


def _inverse_width(a: float, b: float, ln_y: np.ndarray) -> np.ndarray:
    """σ = min(0.5, 1/(a + b ln y)) as GFlash, also where a + b ln y ≤ 0 (very low energies)."""
    denominator = a + b * ln_y
    return np.where(denominator > 2.0, 1.0 / np.maximum(denominator, 2.0), 0.5)


def longitudinal_parameters(
    energy_gev: np.ndarray, rng: np.random.Generator, config: SimulationConfig = SimulationConfig()
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per shower: T (depth of the maximum after conversion [X0]), α, and exp<ln α> (for τ).

    As GFlashSamplingShowerParameterisation::ComputeLongitudinalParameters / GenerateEnergyProfile,
    with the medium of layers 1-20.
    """
    media, c = layer_media(config), config
    f_s, ehat, z = media.sampling_frequency[0], media.ehat, media.z_eff[0]
    ln_y = np.log(energy_gev * 1e3 / media.critical_mev)
    t_hom = np.maximum(ln_y + c.t_hom, 0.1)
    alpha_hom = np.maximum(c.alpha_hom[0] + (c.alpha_hom[1] + c.alpha_hom[2] / z) * ln_y, 0.1)
    mean_log_t = np.maximum(0.1, np.log(np.maximum(t_hom + c.t_sam[0] / f_s + c.t_sam[1] * (1 - ehat), 1e-3)))
    mean_log_alpha = np.maximum(0.1, np.log(np.maximum(alpha_hom + c.alpha_sam / f_s, 1e-3)))
    sigma_t = _inverse_width(*c.sigma_log_t, ln_y)
    sigma_alpha = _inverse_width(*c.sigma_log_alpha, ln_y)
    rho = np.clip(c.correlation[0] + c.correlation[1] * ln_y, -1.0, 1.0)
    g1, g2 = rng.standard_normal((2, len(energy_gev)))
    plus, minus = np.sqrt((1 + rho) / 2) * g1, np.sqrt((1 - rho) / 2) * g2  # correlation ρ between the sums
    t_max = np.maximum(1.0, np.exp(mean_log_t + sigma_t * (plus + minus)))  # GFlash's floors
    alpha = np.maximum(1.1, np.exp(mean_log_alpha + sigma_alpha * (plus - minus)))
    return t_max, alpha, np.exp(mean_log_alpha)


def homogeneous_profile(
    energy_gev: np.ndarray,
    rng: np.random.Generator,
    *,
    z_eff: float,
    critical_mev: float,
    config: SimulationConfig = SimulationConfig(),
) -> tuple[np.ndarray, np.ndarray]:
    """Per shower: T (depth of the maximum [X0]) and α of GFlash's em profile in a *homogeneous* medium of
    effective atomic number ``z_eff`` and critical energy ``critical_mev`` (no sampling terms), fluctuated
    as in :func:`longitudinal_parameters`.  The pion simulator's electrons use it in the AHCAL's mixture.
    """
    c = config
    ln_y = np.log(energy_gev * 1e3 / critical_mev)
    t_mean = np.maximum(ln_y + c.t_hom, 0.1)
    alpha_mean = np.maximum(c.alpha_hom[0] + (c.alpha_hom[1] + c.alpha_hom[2] / z_eff) * ln_y, 1.1)
    sigma_t, sigma_alpha = _inverse_width(*c.sigma_log_t, ln_y), _inverse_width(*c.sigma_log_alpha, ln_y)
    rho = np.clip(c.correlation[0] + c.correlation[1] * ln_y, -1.0, 1.0)
    g1, g2 = rng.standard_normal((2, len(energy_gev)))
    plus, minus = np.sqrt((1 + rho) / 2) * g1, np.sqrt((1 - rho) / 2) * g2
    t_max = np.maximum(1.0, t_mean * np.exp(sigma_t * (plus + minus)))
    alpha = np.maximum(1.1, alpha_mean * np.exp(sigma_alpha * (plus - minus)))
    return t_max, alpha


def radial_parameters(
    energy_gev: np.ndarray, tau: np.ndarray, config: SimulationConfig = SimulationConfig()
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """R_C, R_T [Molière radii] and core weight p of showers (B, 1) in every layer, at depths τ (B, 30).

    As GFlashSamplingShowerParameterisation::ComputeRadialParameters, with each layer's own Z, F_S.
    """
    media, c = layer_media(config), config
    z, f_s, ehat = media.z_eff, media.sampling_frequency, media.ehat
    ln_e = np.log(energy_gev)
    r_core = c.core_radius[0] + c.core_radius[1] * ln_e + (c.core_radius[2] + c.core_radius[3] * z) * tau
    k1, k3, k4 = c.tail_radius[0] + c.tail_radius[1] * z, c.tail_radius[2], c.tail_radius[3]
    k5 = c.tail_radius[4] + c.tail_radius[5] * ln_e
    r_tail = k1 * (np.exp(k4 * (tau - k3)) + np.exp(k5 * (tau - k3)))
    p1, p2 = c.core_weight[0] + c.core_weight[1] * z, c.core_weight[2] + c.core_weight[3] * z
    x = (p2 - tau) / (c.core_weight[4] + c.core_weight[5] * ln_e)
    weight = p1 * np.exp(x - np.exp(x))
    decay = np.exp(-tau) / f_s
    r_core = r_core + c.core_radius_sam[0] * (1 - ehat) + c.core_radius_sam[1] * decay
    r_tail = r_tail + c.tail_radius_sam[0] * (1 - ehat) + c.tail_radius_sam[1] * decay
    weight = weight + (1 - ehat) * (c.core_weight_sam[0] + c.core_weight_sam[1] / f_s * np.exp(-((tau - 1) ** 2)))
    return np.maximum(r_core, 1e-3), np.maximum(r_tail, 1e-3), np.clip(weight, 0.0, 1.0)


def _simulate_batch(
    energy_gev: np.ndarray, rng: np.random.Generator, config: SimulationConfig, max_hits: int, cells: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The hits of photons of ``energy_gev`` (B,): rows (K, 4) float32 and hits per shower (B,).

    Rows are x, y, z, E, shower after shower, most energetic first.  ``cells`` is a zeroed float32
    work buffer of at least B · 27000 + 1 cells; it is left zeroed.
    """
    media = layer_media(config)
    tables, mean_core_mev, mean_tail_mev = _spot_energy_tables(config)
    b = len(energy_gev)
    e = energy_gev[:, None]  # (B, 1)

    # 1.-2. conversion depth and longitudinal profile: energy deposited per layer
    conversion = rng.exponential(config.conversion_mean_x0, (b, 1))  # (B, 1) [X0]
    t_max, alpha, mean_alpha = longitudinal_parameters(energy_gev, rng, config)
    beta = ((alpha - 1) / t_max)[:, None]  # (B, 1)
    after = np.maximum(media.depth_x0 - conversion, 0.0)  # (B, 31) depth after the conversion
    deposited = e * np.maximum(np.diff(gammainc(alpha[:, None], beta * after), axis=1), 0.0)  # (B, 30) [GeV]

    # 3. sampling: Gamma fluctuation of variance a_s² E (a layer without energy stays at 0), sampling fraction
    a2 = config.sampling_term**2
    visible_mev = rng.gamma(deposited / a2, a2) * media.sampling_fraction * 1e3  # (B, 30)

    # 4. spots: the core carries a fraction p of the visible energy, the tail 1 − p; Poisson counts of spots
    tau = after[:, 1:] / t_max[:, None] * ((alpha - 1) / alpha * mean_alpha / (mean_alpha - 1))[:, None]
    r_core, r_tail, weight = radial_parameters(e, tau, config)  # (B, 30) each
    mean_count = np.stack([weight / mean_core_mev, (1 - weight) / mean_tail_mev], axis=-1) * visible_mev[..., None]
    counts = rng.poisson(mean_count).ravel()  # (B · 30 · 2,): shower, layer, core/tail
    radius_cells = np.stack([r_core, r_tail], axis=-1) * (media.moliere_mm / CELL_SIZE_MM)[:, None]  # (B, 30, 2)
    # Chosen: R at most the grid's width.  GFlash's R_T grows as exp(k5 τ) and reaches absurd values in the
    # last layers of low-energy showers (τ ≫ 3), where there is hardly any energy; the cap keeps positions in int32.
    radius_cells = np.minimum(radius_cells, GRID_SIZE)
    half = config.entry_spread_cells / 2
    entry = (GRID_SIZE / 2 + OFFSET + rng.uniform(-half, half, (2, b))).astype(np.float32)  # (2, B) [cells]
    # Flat cell index shower · 27000 + x · 900 + y · 30 + layer, less what OFFSET adds to x and y.
    first_cell = np.arange(b)[:, None] * _CELLS_PER_SHOWER + np.arange(N_LAYERS) - OFFSET * (GRID_SIZE + 1) * N_LAYERS
    base = np.repeat(np.repeat(first_cell.astype(np.int32).ravel(), 2), counts)  # (S,) per spot
    x0 = np.repeat(np.repeat(entry[0], 2 * N_LAYERS), counts)
    y0 = np.repeat(np.repeat(entry[1], 2 * N_LAYERS), counts)
    scale = np.repeat(radius_cells.astype(np.float32).ravel(), counts)
    table = np.repeat(np.tile(np.array([0, 1 << TABLE_BITS], dtype=np.int32), b * N_LAYERS), counts)

    # One 64-bit random number per spot, read as four 16-bit table indices: energy, radius, azimuth (+1 unused).
    n_spots = len(base)
    words = rng.bit_generator.random_raw(n_spots).view(np.uint16)  # (4 S,)
    energy = np.take(tables.ravel(), words[:n_spots] + table)  # (S,) float32 [MeV]
    radius = scale * np.take(RADIUS, words[n_spots : 2 * n_spots])  # [cells]
    azimuth = words[2 * n_spots : 3 * n_spots]
    ix = (x0 + radius * np.take(COS, azimuth)).astype(np.int32)  # truncation = floor for x > 0: all the grid
    iy = (y0 + radius * np.take(SIN, azimuth)).astype(np.int32)
    inside = ((ix - OFFSET).view(np.uint32) < GRID_SIZE) & ((iy - OFFSET).view(np.uint32) < GRID_SIZE)
    key = np.where(inside, base + ix * (GRID_SIZE * N_LAYERS) + iy * N_LAYERS, b * _CELLS_PER_SHOWER)  # leak: last

    # 5. cells: sum the spots (in order: float32 sums are reproducible), keep every cell > 0
    cells = cells[: b * _CELLS_PER_SHOWER + 1]
    np.add.at(cells, key, energy)
    cells[-1] = 0.0  # the spots outside the grid
    return hits_from_cells(cells, b, (GRID_SIZE, GRID_SIZE, N_LAYERS), max_hits)


def _simulate_task(task: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simulate batch ``batch`` of a run: incident energies, hit rows, hits per shower."""
    seed, batch, size, low, high, config, max_hits = task
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(batch,)))
    energy = rng.uniform(low, high, size) if high > low else np.full(size, float(low))
    rows, n_hits = _simulate_batch(energy, rng, config, max_hits, cell_buffer(size * _CELLS_PER_SHOWER + 1))
    return energy, rows, n_hits


def _check_request(n, energy, max_hits: int, batch_size: int) -> tuple[float, float]:
    """Validate a simulation request; returns the incident-energy range (low, high) [GeV]."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        msg = f"n must be a positive number of showers; got {n!r}"
        raise ValueError(msg)
    bounds = (energy, energy) if np.isscalar(energy) else tuple(energy)
    if len(bounds) != 2 or not all(
        isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and np.isfinite(v) for v in bounds
    ):
        msg = f"energy must be a number or a range (low, high) [GeV]; got {energy!r}"
        raise ValueError(msg)
    low, high = (float(v) for v in bounds)
    if not 0 < low <= high:
        msg = f"energy must be positive and a range must have low <= high [GeV]; got {energy!r}"
        raise ValueError(msg)
    for name, value in (("max_hits", max_hits), ("batch_size", batch_size)):
        check_int(value, name, minimum=1)
    return low, high


def iter_simulated_showers(
    n: int,
    *,
    energy: float | tuple[float, float] = (10.0, 100.0),
    seed: int = 0,
    max_hits: int = 1700,
    config: SimulationConfig = SimulationConfig(),
    batch_size: int = 128,
    chunk_size: int = 8192,
    progress: bool = True,
) -> Iterator[Showers]:
    """:func:`simulate_showers` in chunks of ``chunk_size`` showers (rounded up to whole batches), for runs larger than memory.

    The chunks, concatenated, are exactly ``simulate_showers(n, ...)`` with the same arguments:
    batch ``b`` of the run draws from the same seed wherever the chunks are cut.
    """
    low, high = _check_request(n, energy, max_hits, batch_size)
    sizes = [min(batch_size, n - start) for start in range(0, n, batch_size)]
    batches_per_chunk = max(1, -(-chunk_size // batch_size))  # whole batches, at least chunk_size showers
    with tqdm(total=n, desc="simulating showers", unit="shower", disable=not progress) as bar:
        for first in range(0, len(sizes), batches_per_chunk):
            chunk = sizes[first : first + batches_per_chunk]
            tasks = [(seed, first + i, size, low, high, config, max_hits) for i, size in enumerate(chunk)]
            hits = np.zeros((sum(chunk), max_hits, 4), dtype=np.float32)
            incident = np.empty(sum(chunk), dtype=np.float32)
            start = 0
            for energies, rows, n_hits in map(_simulate_task, tasks):
                size = len(energies)
                incident[start : start + size] = energies
                shower = np.repeat(np.arange(start, start + size), n_hits)
                rank = np.arange(len(rows)) - np.repeat(np.cumsum(n_hits) - n_hits, n_hits)
                hits.reshape(-1, 4)[shower * max_hits + rank] = rows
                start += size
                bar.update(size)
            yield Showers(hits, incident)


def simulate_showers(
    n: int,
    *,
    energy: float | tuple[float, float] = (10.0, 100.0),
    seed: int = 0,
    max_hits: int = 1700,
    config: SimulationConfig = SimulationConfig(),
    batch_size: int = 128,
    progress: bool = True,
) -> Showers:
    """Simulate ``n`` photon showers in the ILD-like Si-W ECAL (the model: see the module docstring).

    ``energy`` is a fixed incident energy [GeV] or a range (low, high) drawn from uniformly (the
    GFlash constants were tuned on GeV-scale showers; 0.5-2000 GeV were tried here).  Hits are the
    cells with visible energy > 0 [MeV], also those below :data:`HIT_THRESHOLD_MEV`; a shower with
    more such cells than ``max_hits`` keeps the ``max_hits`` most energetic (the dropped ones are
    the softest, below threshold unless a shower has more than ``max_hits`` hits above it; at
    100 GeV about 3 showers in 4 lose some sub-threshold cells).  Hits are sorted by energy,
    descending, and padded with zeros; x, y, z are integer cell indices (0..29) as float32.
    Energy falling outside the 30 × 30 × 30 grid is lost (leakage).  The showers depend on
    ``seed`` and ``batch_size`` only.  One process makes ~3000-4000 showers/s (10-100 GeV); a
    trial with two spawned workers was slower on this 2-core machine (the hits travel back
    through pipes; another job held the second core), so batches run in this process.
    """
    chunks = iter_simulated_showers(
        n, energy=energy, seed=seed, max_hits=max_hits, config=config, batch_size=batch_size,
        chunk_size=n, progress=progress,
    )  # fmt: skip
    return next(chunks)  # one chunk holds all n showers


def shower_dataset(
    n_showers: int,
    *,
    seed: int,
    energy: float | tuple[float, float] = (10.0, 100.0),
    data_dir: str | os.PathLike = "data/showers",
    max_hits: int = 1700,
    progress: bool = True,
) -> Path:
    """The file of ``n_showers`` simulated photon showers, simulated once and then reused.

    Kept as ``data_dir/photons_<energy>GeV_<n>_seed<seed>.h5`` in the reference layout,
    written in chunks (memory does not grow with ``n_showers``) and atomically; the
    simulator's settings are stored with it.  A file of that name holding another number
    of showers is an error rather than silently reused.
    """
    low, high = _check_request(n_showers, energy, max_hits, 128)
    label = f"{low:g}" if low == high else f"{low:g}-{high:g}"
    path = Path(data_dir) / f"photons_{label}GeV_{n_showers}_seed{seed}.h5"
    if reusable_shower_file(path, n_showers):
        return path
    provenance = {
        "generator": "omnijet GFlash photon-shower simulator", "seed": seed, "incident_energy_gev": [low, high],
        "max_hits_simulated": max_hits, "simulation_config": json.dumps(asdict(SimulationConfig())),
    }  # fmt: skip
    showers = iter_simulated_showers(n_showers, energy=(low, high), seed=seed, max_hits=max_hits, progress=progress)
    return write_shower_chunks(path, showers, provenance=provenance)
