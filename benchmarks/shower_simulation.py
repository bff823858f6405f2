"""Speed of the parameterised photon-shower simulator (showers/s), and what its showers look like.

    .venv/bin/python benchmarks/shower_simulation.py [--n 20000] [--seed 0] [--batch-size 128]
    .venv/bin/python benchmarks/shower_simulation.py --quick    # smoke test: 256 showers, 20 per energy

One process (``omnijet_lib.data.shower_simulation.simulate_showers``), incident energies uniform in
10-100 GeV as in the OmniJet-α_C dataset, after a warm-up of one batch.  The rate counts the whole
call, including the allocation of the (N, 1700, 4) float32 output (27 kB a shower).  CPU time is
printed next to wall time: a busy machine lowers the second, not the first.  The table then
simulates ``--n-per-energy`` showers at each fixed energy and gives the mean number of hits above
threshold (0.1 MeV), of all stored cells (> 0 MeV), the mean visible energy sum above threshold
with its relative spread, the spread of the sum weighted layer by layer with 1/sampling fraction
(the calibrated energy, as CALICE measures resolution) and the mean hottest cell.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from omnijet_lib.data.shower_simulation import layer_media, simulate_showers
from omnijet_lib.data.showers import HIT_THRESHOLD_MEV


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="showers in the timed run (10-100 GeV)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--n-per-energy", type=int, default=1000, help="showers per energy in the table")
    parser.add_argument("--energies", type=float, nargs="+", default=[10.0, 50.0, 100.0], help="GeV")
    parser.add_argument("--quick", action="store_true", help="small settings: a smoke test in seconds")
    args = parser.parse_args()
    if args.quick:  # two batches in the timed run
        args.n, args.n_per_energy = 2 * args.batch_size, 20

    simulate_showers(args.batch_size, seed=args.seed + 1, batch_size=args.batch_size, progress=False)  # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    showers = simulate_showers(args.n, seed=args.seed, batch_size=args.batch_size, progress=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    n_above = (showers.energy > HIT_THRESHOLD_MEV).sum(axis=1)
    print(
        f"simulate_showers: {args.n} photons, 10-100 GeV, batch {args.batch_size}, one process, numpy {np.__version__}"
    )
    print(f"  {args.n / wall:.0f} showers/s wall ({wall:.2f} s), {args.n / cpu:.0f} showers/s CPU ({cpu:.2f} s)")
    print(f"  hits above {HIT_THRESHOLD_MEV} MeV: {n_above.mean():.0f} mean, {n_above.min()}-{n_above.max()}")
    print()
    header = ("E [GeV]", "hits>0.1MeV", "cells>0", "sum [MeV]", "sum s/m", "calibrated s/m", "hottest [MeV]")
    print("".join(f"{h:>15}" for h in header))
    fraction = layer_media().sampling_fraction
    for energy in args.energies:
        showers = simulate_showers(args.n_per_energy, energy=energy, seed=args.seed, progress=False)
        visible = np.where(showers.energy > HIT_THRESHOLD_MEV, showers.energy, 0.0)
        n_hits, energy_sum = (visible > 0).sum(axis=1), visible.sum(axis=1)
        calibrated = (visible / fraction[showers.z.astype(int)]).sum(axis=1)
        print(
            f"{energy:>15.0f}{n_hits.mean():>15.0f}{showers.n_hits.mean():>15.0f}{energy_sum.mean():>15.0f}"
            f"{energy_sum.std() / energy_sum.mean():>15.3f}{calibrated.std() / calibrated.mean():>15.3f}"
            f"{showers.energy.max(axis=1).mean():>15.1f}"
        )


if __name__ == "__main__":
    main()
