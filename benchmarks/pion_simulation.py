"""Speed of the parameterised pion-shower simulator (showers/s), and its calibrated response and resolution.

    .venv/bin/python benchmarks/pion_simulation.py [--n 20000] [--seed 0] [--batch-size 1000]
    .venv/bin/python benchmarks/pion_simulation.py --quick    # smoke test: 2 batches of 200, 100 per energy

One process (``omnijet_lib.data.pion_simulation.simulate_pions``) in the AHCAL geometry, incident
energies uniform in 10-100 GeV, after a warm-up of one batch and of :func:`calibration_factor`
(simulated once, then cached).  The rate counts the whole call, including the padded (N, max_hits, 4)
float32 output.  CPU time is printed next to wall time: a busy machine lowers the second, not the
first.  The table then simulates ``--n-per-energy`` pions at each fixed energy and gives the mean
number of hits above threshold (half a MIP), the calibrated response (visible sum above threshold ×
calibration factor / E), its relative spread over all showers (late starts and punch-through leak:
a long low tail), the spread for showers starting in the first ten layers (~1.2 λ_I, as CALICE
selects them), the fraction of such showers and the e/π ratio of the visible sums.  Last, the fit
σ/E = a/√E ⊕ b to the early-start column.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.optimize import curve_fit

from omnijet_lib.data.geometry import AHCAL
from omnijet_lib.data.pion_simulation import (
    PionSimulationConfig,
    calibration_factor,
    simulate_pions,
)
from omnijet_lib.shower_observables import energy_sum, shower_start_layer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="showers in the timed run (10-100 GeV)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--n-per-energy", type=int, default=2000, help="showers per energy in the table")
    parser.add_argument("--energies", type=float, nargs="+", default=[10.0, 30.0, 50.0, 70.0, 90.0], help="GeV")
    parser.add_argument("--quick", action="store_true", help="small settings: a smoke test in seconds")
    args = parser.parse_args()
    if args.quick:  # two batches in the timed run
        args.batch_size, args.n_per_energy = 200, 100
        args.n = 2 * args.batch_size

    factor = calibration_factor()  # simulated once (cached): not part of the timing
    simulate_pions(args.batch_size, seed=args.seed + 1, batch_size=args.batch_size, progress=False)  # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    showers = simulate_pions(args.n, seed=args.seed, batch_size=args.batch_size, progress=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    n_above = (showers.energy > showers.threshold).sum(axis=1)
    print(
        f"simulate_pions: {args.n} pions, 10-100 GeV, AHCAL, batch {args.batch_size}, one process, "
        f"numpy {np.__version__}"
    )
    print(f"  {args.n / wall:.0f} showers/s wall ({wall:.2f} s), {args.n / cpu:.0f} showers/s CPU ({cpu:.2f} s)")
    print(f"  hits above {AHCAL.hit_threshold_mev} MeV: {n_above.mean():.0f} mean, {n_above.min()}-{n_above.max()}")
    print(f"  calibration factor: {factor * 1e3:.3f} GeV per GeV visible ({factor:.5f} GeV/MeV)")
    print()
    header = ("E [GeV]", "hits>thr", "response", "s/m all", "s/m early", "early frac", "e/pi")
    print("".join(f"{h:>12}" for h in header))
    electron = PionSimulationConfig(particle="electron")
    early_resolution = []
    for energy in args.energies:
        pions = simulate_pions(args.n_per_energy, energy=energy, seed=args.seed + int(energy), progress=False)
        electrons = simulate_pions(args.n_per_energy, energy=energy, seed=args.seed, config=electron, progress=False)
        calibrated = energy_sum(pions) * factor
        early = calibrated[shower_start_layer(pions) < 10]
        early_resolution.append(early.std() / early.mean())
        n_hits = (pions.energy > pions.threshold).sum(axis=1)
        e_over_pi = energy_sum(electrons).mean() / energy_sum(pions).mean()
        print(
            f"{energy:>12.0f}{n_hits.mean():>12.0f}{calibrated.mean() / energy:>12.4f}"
            f"{calibrated.std() / calibrated.mean():>12.4f}{early_resolution[-1]:>12.4f}"
            f"{len(early) / len(pions):>12.3f}{e_over_pi:>12.3f}"
        )
    if len(args.energies) >= 2:
        (a, b), _ = curve_fit(
            lambda e, a, b: np.sqrt(a**2 / e + b**2),
            np.array(args.energies),
            np.array(early_resolution),
            p0=(0.55, 0.03),
        )
        print(f"early-start resolution fit: sigma/E = {abs(a):.3f}/sqrt(E) (+) {abs(b):.3f}")


if __name__ == "__main__":
    main()
