"""Real top and QCD jets, and detector-level generic jets, from Pythia 8 + FastJet (docs/jets.md).

JetClass cannot be downloaded here, so jets are generated: pp at 13 TeV, anti-kT
R = 0.8 on visible final-state particles (no neutrinos), 500 < pT < 1000 GeV,
|eta| < 2.  Top jets (t -> b q q') are truth-matched: the last top copy and its
b, q and q' lie within dR < 0.8 of the jet axis.  Generator level only: no
detector simulation; QCD is dijet production rather than Z -> nu nu + jet.

A second domain, process ``"dijet"``: every jet of QCD dijet events with
300 < pT < 1500 GeV and |eta| < 2 (all flavours, no truth selection), events drawn
with a pT-hat bias so that the whole range is populated (:data:`PROCESS_SETTINGS`),
seen through a CMS-like parametric detector response
(:mod:`omnijet_lib.data.detector_response`) applied to each event's particles before
clustering.  Any process takes a ``detector``; only ``"dijet"`` has one by default.

Work is cut into chunks of jets, each with its own Pythia seed derived from
(seed, process, chunk index), so a chunk is the same whichever worker runs it
and whenever.  :func:`generate_jet_file` writes each finished chunk atomically
to ``<out>.parts/``; running it again after an interruption skips the finished
chunks, then merges them into ``out``.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import json
import multiprocessing
import multiprocessing.pool
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

import awkward as ak
import numpy as np
from tqdm.auto import tqdm

from omnijet_lib.atomic import exclusive
from omnijet_lib.data.detector_response import DetectorResponseConfig, detector_config, detector_response
from omnijet_lib.data.jet_files import JetFileWriter, jet_file_info, read_jets, write_jets
from omnijet_lib.data.jets import Jets, concatenate, label_index
from omnijet_lib.errors import check_int
from omnijet_lib.observables import delta_r, pt_eta_phi_mass

COMMON_SETTINGS = (
    "Beams:eCM = 13000.",
    "PhaseSpace:pTHatMin = 450",  # 50 GeV below the jet cut: jets above 500 GeV are not biased
    "PartonLevel:MPI = on",
    "ParticleDecays:limitTau0 = on",  # long-lived hadrons (tau0 > 10 mm) stay undecayed,
    "ParticleDecays:tau0Max = 10.",  # as they would reach a detector
    "Print:quiet = on",
)
# New processes go at the end: a process's position enters its chunk seeds (chunk_seed).
PROCESS_SETTINGS = {
    "top": (
        "Top:gg2ttbar = on",
        "Top:qqbar2ttbar = on",
        "24:onMode = off",  # W -> hadrons only, so that tops decay t -> b q q'
        "24:onIfAny = 1 2 3 4 5",
    ),
    "qcd": ("HardQCD:all = on",),
    # Generic jets over 300-1500 GeV: every 2 -> 2 QCD process (all flavours), pT-hat above 250 GeV (50 GeV
    # below the jet cut; it overrides COMMON_SETTINGS, a later setting wins in Pythia), events drawn with
    # probability proportional to dsigma x (pTHat / 300 GeV)^6 and kept unweighted: the pT-hat spectrum of the
    # sample is then nearly flat (it falls by ~3x from 300 to 1500 GeV instead of ~10^3).
    "dijet": (
        "HardQCD:all = on",
        "PhaseSpace:pTHatMin = 250",
        "PhaseSpace:bias2Selection = on",
        "PhaseSpace:bias2SelectionPow = 6",
        "PhaseSpace:bias2SelectionRef = 300",
    ),
}
# Generic jets carry JetClass's "QCD" label: mostly light-quark and gluon jets, as JetClass's QCD class.
PROCESS_LABELS = {"top": label_index("Tbqq"), "qcd": label_index("QCD"), "dijet": label_index("QCD")}
# What each process describes, for the file's provenance (processes not listed: nothing to add).
PROCESS_SPECTRA = {
    "dijet": "Pythia 8 HardQCD:all with pTHat > 250 GeV, events drawn with probability proportional to "
    "dsigma x (pTHat/300 GeV)^6 (PhaseSpace:bias2Selection) and stored unweighted: nearly flat in pTHat; "
    "weight a jet by (300 GeV/pTHat)^6, about (300 GeV/pT)^6, for the physical spectrum",
}
NEUTRINOS = (12, 14, 16)
EVENTS_PER_BATCH = 100  # events per nextBatch call: ~1 s of Pythia, a few MB of awkward arrays


@dataclass(frozen=True)
class JetSelection:
    radius: float = 0.8  # anti-kT distance parameter, also the truth-matching cone
    pt_min: float = 500.0  # GeV, JetClass window
    pt_max: float = 1000.0  # GeV
    abs_eta_max: float = 2.0


# The selection and detector of a process when none is given (processes not listed: JetSelection(), no detector).
PROCESS_SELECTIONS = {"dijet": JetSelection(pt_min=300.0, pt_max=1500.0)}
PROCESS_DETECTORS = {"dijet": "cms"}
DEFAULT = "default"  # the ``detector`` meaning: the process's own (PROCESS_DETECTORS)


def process_selection(process: str, selection: JetSelection | None = None) -> JetSelection:
    """``selection``, or the process's default one."""
    return selection if selection is not None else PROCESS_SELECTIONS.get(process, JetSelection())


def process_detector(
    process: str, detector: str | DetectorResponseConfig | None = DEFAULT
) -> DetectorResponseConfig | None:
    """The detector response of a run: ``"default"`` (the process's own), a name ("cms", "none"), a config or None."""
    if isinstance(detector, str) and detector == DEFAULT:
        detector = PROCESS_DETECTORS.get(process)
    return detector_config(detector)


def pythia_settings(process: str, seed: int) -> list[str]:
    """All Pythia settings strings used for ``process`` with Pythia seed ``seed``."""
    if process not in PROCESS_SETTINGS:
        msg = f"unknown process {process!r}; choose from {', '.join(PROCESS_SETTINGS)}"
        raise ValueError(msg)
    return [*COMMON_SETTINGS, *PROCESS_SETTINGS[process], "Random:setSeed = on", f"Random:seed = {seed}"]


def chunk_seed(seed: int, process: str, chunk: int) -> int:
    """The Pythia seed of one chunk: independent streams per (seed, process, chunk)."""
    state = np.random.SeedSequence([seed, list(PROCESS_SETTINGS).index(process), chunk]).generate_state(1)
    return int(state[0]) % 900_000_000 + 1  # Pythia accepts 1 .. 900 000 000


def generate_chunk(
    process: str,
    n_jets: int,
    *,
    seed: int,
    selection: JetSelection | None = None,
    detector: str | DetectorResponseConfig | None = DEFAULT,
) -> Jets:
    """Run one Pythia instance until it has produced ``n_jets`` selected jets.

    With a detector, its random numbers come from ``numpy.random.default_rng(seed)``,
    drawn batch after batch: the chunk is reproducible from ``seed`` alone.
    """
    import pythia8mc  # compiled extension: imported where used, so workers pay for it only once

    selection = process_selection(process, selection)
    detector = process_detector(process, detector)
    rng = np.random.default_rng(seed) if detector is not None else None
    pythia = pythia8mc.Pythia("", False)  # no banner
    for setting in pythia_settings(process, seed):
        pythia.readString(setting)
    if not pythia.init():
        msg = f"Pythia failed to initialise for process {process!r}"
        raise RuntimeError(msg)
    batches, n_found = [], 0
    while n_found < n_jets:
        events = pythia.nextBatch(EVENTS_PER_BATCH, "skip")
        jets = jets_from_events(events, process, selection, pythia.particleData, detector=detector, rng=rng)
        batches.append(jets)
        n_found += len(jets)
    return concatenate(batches)[:n_jets]


def jets_from_events(
    events: ak.Array,
    process: str,
    selection: JetSelection,
    particle_data,
    *,
    detector: DetectorResponseConfig | None = None,
    rng: np.random.Generator | None = None,
) -> Jets:
    """Cluster, select and (for tops) truth-match the jets of a batch of Pythia events.

    With a ``detector``, the visible particles are replaced by what it reconstructs of them
    (:func:`~omnijet_lib.data.detector_response.detector_response`, drawing from ``rng``)
    before clustering; truth matching still uses the generator record.
    """
    import fastjet

    particles = events.prt
    aid = abs(particles.id)
    visible = particles[(particles.status > 0) & (aid != NEUTRINOS[0]) & (aid != NEUTRINOS[1]) & (aid != NEUTRINOS[2])]
    if detector is not None:
        visible = _detected(visible, detector, rng, particle_data)
    momenta = ak.zip({"px": visible.p.px, "py": visible.p.py, "pz": visible.p.pz, "E": visible.p.e})
    cluster = fastjet.ClusterSequence(momenta, fastjet.JetDefinition(fastjet.antikt_algorithm, selection.radius))
    jets_p4 = cluster.inclusive_jets(min_pt=selection.pt_min)  # (events, jets)
    constituent_index = cluster.constituent_index(min_pt=selection.pt_min)  # (events, jets, var)

    n_jets_per_event = ak.to_numpy(ak.num(jets_p4, axis=1))
    pt, eta, phi, mass = pt_eta_phi_mass(*(ak.to_numpy(ak.flatten(jets_p4[f])) for f in ("px", "py", "pz", "E")))
    keep = (pt < selection.pt_max) & (abs(eta) < selection.abs_eta_max)
    if process == "top":
        event_of_jet = np.repeat(np.arange(len(events)), n_jets_per_event)
        keep &= _matched_to_top(particles, event_of_jet, eta, phi, selection.radius)

    # Constituents: indices into each event's visible particles -> indices into the flat arrays.
    event_offsets = np.concatenate([[0], np.cumsum(ak.to_numpy(ak.num(visible, axis=1)))])[:-1]
    per_jet = ak.flatten(constituent_index + event_offsets, axis=1)  # (jets, var)
    counts = ak.to_numpy(ak.num(per_jet, axis=1))[keep]
    flat_index = ak.to_numpy(ak.flatten(per_jet[keep]))
    flat = {f: ak.to_numpy(ak.flatten(visible.p[f]))[flat_index] for f in ("px", "py", "pz", "e")}
    flat_id = ak.to_numpy(ak.flatten(visible.id))[flat_index]
    c_pt, c_eta, c_phi, _ = pt_eta_phi_mass(flat["px"], flat["py"], flat["pz"], flat["e"])
    return Jets.from_flat(
        n_constituents=counts,
        constituents={
            "pt": c_pt,
            "eta": c_eta,
            "phi": c_phi,
            "charge": _charges(flat_id, particle_data),
            "pdg_id": flat_id,
        },
        pt=pt[keep],
        eta=eta[keep],
        phi=phi[keep],
        mass=mass[keep],
        label=np.full(int(keep.sum()), PROCESS_LABELS[process]),
    ).pt_ordered()


_P4 = ("px", "py", "pz", "energy")  # the detector response's names of Pythia's px, py, pz, e


def _detected(visible: ak.Array, detector: DetectorResponseConfig, rng: np.random.Generator, particle_data) -> ak.Array:
    """The particles the detector reconstructs of each event's visible particles, in the same layout."""
    counts = ak.to_numpy(ak.num(visible, axis=1))
    flat_id = ak.to_numpy(ak.flatten(visible.id))
    particles = {f: ak.to_numpy(ak.flatten(visible.p[g])) for f, g in zip(_P4, ("px", "py", "pz", "e"), strict=True)}
    particles |= {"charge": _charges(flat_id, particle_data), "pdg_id": flat_id}
    detected = detector_response(particles, config=detector, rng=rng)
    event = np.repeat(np.arange(len(counts)), counts)[detected["index"]]
    new_counts = np.bincount(event, minlength=len(counts))
    p4 = ak.zip({g: detected[f] for f, g in zip(_P4, ("px", "py", "pz", "e"), strict=True)})
    flat = ak.zip({"id": detected["pdg_id"].astype(np.int32), "p": p4}, depth_limit=1)
    return ak.unflatten(flat, new_counts)


def _charges(pdg_id: np.ndarray, particle_data) -> np.ndarray:
    """Electric charge of each particle, looked up once per distinct PDG id."""
    ids, inverse = np.unique(pdg_id, return_inverse=True)
    table = np.array([particle_data.charge(int(i)) for i in ids])
    return table[inverse]


def _matched_to_top(particles: ak.Array, event_of_jet: np.ndarray, jet_eta, jet_phi, radius: float) -> np.ndarray:
    """True for jets within ``radius`` of a last-copy top and of its b, q and q'."""
    pid, d1, d2 = particles.id, particles.daughter1, particles.daughter2
    last_top = (abs(pid) == 6) & (abs(pid[d1]) != 6)  # the copy of the top that decays
    top = ak.local_index(pid)[last_top]
    b = ak.where(abs(pid[d1[top]]) == 5, d1[top], d2[top])
    w = ak.where(abs(pid[d1[top]]) == 24, d1[top], d2[top])
    is_t_to_bw = ak.to_numpy(ak.flatten((abs(pid[b]) == 5) & (abs(pid[w]) == 24)))
    while True:  # follow the W through its recoil copies to the copy that decays
        is_copy = (pid[d1[w]] == pid[w]) & (d1[w] == d2[w])
        if not ak.any(is_copy):
            break
        w = ak.where(is_copy, d1[w], w)

    # Pair every jet with every top of its event, as flat numpy rows.
    n_tops = ak.to_numpy(ak.num(top, axis=1))
    tops_of_jet = n_tops[event_of_jet]
    jet_row = np.repeat(np.arange(len(event_of_jet)), tops_of_jet)
    first_top = np.concatenate([[0], np.cumsum(n_tops)])[:-1]  # flat index of each event's first top
    top_row = (
        first_top[event_of_jet[jet_row]]
        + np.arange(len(jet_row))
        - np.repeat(np.cumsum(tops_of_jet) - tops_of_jet, tops_of_jet)
    )
    inside = is_t_to_bw[top_row]
    for parton in (top, b, d1[w], d2[w]):
        _, eta, phi, _ = pt_eta_phi_mass(
            *(ak.to_numpy(ak.flatten(particles.p[f][parton])) for f in ("px", "py", "pz", "e"))
        )
        inside &= delta_r(jet_eta[jet_row], jet_phi[jet_row], eta[top_row], phi[top_row]) < radius
    matched = np.zeros(len(event_of_jet), dtype=bool)
    np.logical_or.at(matched, jet_row, inside)
    return matched


def _default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _check_request(
    process: str,
    n_jets: int,
    seed: int,
    chunk_size: int,
    n_workers: int | None,
    selection: JetSelection | None = None,
    detector: str | DetectorResponseConfig | None = DEFAULT,
) -> tuple[JetSelection, DetectorResponseConfig | None]:
    """Refuse bad arguments before anything is written: a run that fails later leaves a parts folder behind.

    Returns the run's selection and detector (the process's defaults where not given).
    """
    if process not in PROCESS_SETTINGS:
        msg = f"unknown process {process!r}; choose from {', '.join(PROCESS_SETTINGS)}"
        raise ValueError(msg)
    check_int(n_jets, "n_jets", minimum=1)
    check_int(seed, "seed", minimum=0)  # SeedSequence takes no negative seed
    check_int(chunk_size, "chunk_size", minimum=1)
    if n_workers is not None:
        check_int(n_workers, "n_workers", minimum=1)
    if selection is not None and not isinstance(selection, JetSelection):
        msg = f"selection must be a JetSelection or None, got {type(selection).__name__}"
        raise TypeError(msg)
    return process_selection(process, selection), process_detector(process, detector)


def _chunk_sizes(n_jets: int, chunk_size: int) -> list[int]:
    full, rest = divmod(n_jets, chunk_size)
    return [chunk_size] * full + ([rest] if rest else [])


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _init_worker(parent: int) -> None:
    """Make a worker ignore Ctrl-C and die with its parent, however the parent dies.

    A parent killed with ``kill -9`` cannot terminate its pool; orphaned workers
    would go on for seconds writing chunks into a parts folder that the next run
    may already be using.  On Linux the kernel sends the worker SIGKILL when its
    parent dies (prctl PR_SET_PDEATHSIG); elsewhere a thread polls the parent's pid.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()
    else:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the above took effect
        os._exit(1)


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(1)


@contextlib.contextmanager
def _pool(n_workers: int) -> Iterator[multiprocessing.pool.Pool]:
    """Worker processes that stop when the block ends, however it ends.

    spawn, not fork: a notebook may already hold torch's threads, which fork can
    deadlock.  Workers ignore Ctrl-C and are terminated by the main process, and die
    with it if it is killed outright (:func:`_init_worker`), so an interrupted run
    leaves no worker behind to write into the next run's chunks.
    """
    pool = multiprocessing.get_context("spawn").Pool(n_workers, initializer=_init_worker, initargs=(os.getpid(),))
    try:
        yield pool
    finally:
        pool.terminate()
        pool.join()


def generate_jets(
    process: str,
    n_jets: int,
    *,
    seed: int,
    chunk_size: int = 500,
    n_workers: int | None = None,
    progress: bool = True,
    selection: JetSelection | None = None,
    detector: str | DetectorResponseConfig | None = DEFAULT,
) -> Jets:
    """Generate ``n_jets`` jets of ``process`` ('top', 'qcd' or 'dijet') in memory, on several processes.

    ``selection`` and ``detector`` default to the process's own (:data:`PROCESS_SELECTIONS`,
    :data:`PROCESS_DETECTORS`); ``detector`` may also be a name ("cms", "none"), a
    :class:`~omnijet_lib.data.detector_response.DetectorResponseConfig` or None.
    """
    selection, detector = _check_request(process, n_jets, seed, chunk_size, n_workers, selection, detector)
    sizes = _chunk_sizes(n_jets, chunk_size)
    n_workers = min(n_workers or _default_workers(), len(sizes))
    bar = tqdm(total=n_jets, desc=f"{process} jets", unit="jet", disable=not progress)
    with _pool(n_workers) as pool:
        tasks = [(process, size, chunk_seed(seed, process, i), selection, detector) for i, size in enumerate(sizes)]
        batches = []
        for jets in pool.imap(_generate_chunk_task, tasks):  # in order: independent of worker timing
            batches.append(jets)
            bar.update(len(jets))
    bar.close()
    return concatenate(batches)


def _generate_chunk_task(task: tuple) -> Jets:
    process, size, seed, selection, detector = task
    return generate_chunk(process, size, seed=seed, selection=selection, detector=detector)


def _write_chunk_task(task: tuple) -> int:
    """Generate one chunk and write it atomically; returns its number of jets."""
    process, size, seed, selection, detector, path = task
    start = time.perf_counter()
    jets = generate_chunk(process, size, seed=seed, selection=selection, detector=detector)
    write_jets(path, jets, provenance={"seconds": time.perf_counter() - start})
    return size


def generate_jet_file(
    process: str,
    n_jets: int,
    out: str | os.PathLike,
    *,
    seed: int,
    chunk_size: int = 500,
    n_workers: int | None = None,
    progress: bool = True,
    selection: JetSelection | None = None,
    detector: str | DetectorResponseConfig | None = DEFAULT,
) -> Path:
    """Generate jets into an HDF5 file; resumable after an interruption.

    If ``out`` already holds these jets (same process, number, seed and
    settings) nothing is done; if it holds others, :class:`FileExistsError`.
    The file records ``worker_seconds``, the wall-clock time workers spent on
    its chunks summed over chunks, and ``jets_per_worker_second``; with a detector
    also ``detector`` (its config), and for 'dijet' ``spectrum`` (how the jet pT
    spectrum was drawn).  ``selection`` and ``detector`` as in :func:`generate_jets`.
    """
    selection, detector = _check_request(process, n_jets, seed, chunk_size, n_workers, selection, detector)
    out = Path(out)
    provenance = {
        "generator": "Pythia 8 + FastJet",
        "generator_version": f"pythia8mc {version('pythia8mc')}, fastjet {version('fastjet')}",
        "process": process,
        "n_jets_requested": n_jets,
        "seed": seed,
        "chunk_size": chunk_size,
        "pythia_settings": [*COMMON_SETTINGS, *PROCESS_SETTINGS[process], "Random:setSeed = on"],
        "selection": asdict(selection),
        "chunk_seeds": "numpy SeedSequence([seed, process index, chunk]) % 900000000 + 1",
    }
    if process in PROCESS_SPECTRA:
        provenance["spectrum"] = PROCESS_SPECTRA[process]
    if detector is not None:  # files without a detector keep exactly the attributes they always had
        provenance["detector"] = detector.to_dict()
        provenance["detector_seeds"] = "numpy default_rng(chunk's Pythia seed), 2 draws per visible particle"
    keys = ("process", "n_jets_requested", "seed", "chunk_size", "pythia_settings", "selection")
    identity = {k: provenance[k] for k in keys + (("detector",) if detector is not None else ())}
    if out.exists():
        existing = jet_file_info(out)
        differing = [k for k, v in identity.items() if existing.get(k) != v]
        if "detector" in existing and detector is None:
            differing.append("detector")
        if differing:
            msg = (
                f"{out} exists and holds other jets (differs in {', '.join(differing)}); "
                "choose another --out or delete it"
            )
            raise FileExistsError(msg)
        return out

    parts = out.with_name(out.name + ".parts")
    parts.mkdir(parents=True, exist_ok=True)
    busy = f"another run is generating into {parts}; wait for it or stop it"
    with exclusive(parts / "lock", busy=busy):  # released before the folder is removed
        manifest = parts / "manifest.json"
        if manifest.exists() and json.loads(manifest.read_text()) != identity:
            msg = f"{parts} holds an unfinished run with other settings; delete it or repeat that run's command"
            raise FileExistsError(msg)
        manifest.write_text(json.dumps(identity, indent=1))
        # Chunks, and the final file, that were being written when a run was killed (atomic.temporary_path:
        # <name>.<pid>.tmp); we hold the lock, so no other run is writing them.  <name>.<pid>.tmp exactly:
        # out.parent may hold other files' temporaries.
        finals = out.parent.glob(f"{glob.escape(out.name)}.*.tmp")
        for stale in [*parts.glob("*.tmp"), *(p for p in finals if p.name[len(out.name) + 1 : -4].isdigit())]:
            stale.unlink()

        sizes = _chunk_sizes(n_jets, chunk_size)
        part_paths = [parts / f"chunk_{i:06d}.h5" for i in range(len(sizes))]
        todo = [i for i, p in enumerate(part_paths) if not p.exists()]
        done_jets = n_jets - sum(sizes[i] for i in todo)
        bar = tqdm(total=n_jets, initial=done_jets, desc=f"{process} jets", unit="jet", disable=not progress)
        if todo:
            tasks = [
                (process, sizes[i], chunk_seed(seed, process, i), selection, detector, part_paths[i]) for i in todo
            ]
            with _pool(min(n_workers or _default_workers(), len(todo))) as pool:
                for size in pool.imap_unordered(_write_chunk_task, tasks):
                    bar.update(size)
        bar.close()

        # Wall-clock seconds each chunk took in its worker, summed over chunks, whichever worker and run:
        # CPU time only if every worker had a core to itself.
        seconds = sum(jet_file_info(p)["seconds"] for p in part_paths)
        with JetFileWriter(out, provenance=provenance) as writer:
            for path in part_paths:
                writer.append(read_jets(path))
            writer.set_attr("worker_seconds", seconds)
            writer.set_attr("jets_per_worker_second", n_jets / seconds)
    shutil.rmtree(parts)
    return out


def jet_dataset(
    n_jets: int,
    *,
    seed: int,
    data_dir: str | os.PathLike = "data/jets",
    n_workers: int | None = None,
    progress: bool = True,
    processes: tuple[str, ...] = ("top", "qcd"),
) -> dict[str, Path]:
    """The files of ``n_jets`` jets of each process (top and QCD), generated once and then reused.

    Each process with its default selection and detector: ``processes=("dijet",)`` gives
    ``<data_dir>/dijet_<n>_seed<seed>.h5``, generic jets seen by the CMS-like detector.
    """
    return {
        process: generate_jet_file(
            process,
            n_jets,
            Path(data_dir) / f"{process}_{n_jets}_seed{seed}.h5",
            seed=seed,
            n_workers=n_workers,
            progress=progress,
        )
        for process in processes
    }
