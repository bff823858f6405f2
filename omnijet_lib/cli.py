"""The ``omnijet`` command: data generation, import, and headless notebooks.

omnijet generate-jets --process top --n 20000 --seed 1 --out data/jets/top.h5
omnijet generate-jets --process dijet --detector cms --n 20000 --seed 1 --out data/jets/dijet.h5
omnijet import-jetclass 'TTBar_*.root' 'ZJetsToNuNu_*.root' --classes Tbqq QCD --out data/jets/jetclass.h5
omnijet import-aspen-open-jets 'aoj/*.h5' --max-jets 100000 --out data/jets/aspen_open_jets.h5
omnijet simulate-showers --n 10000 --energy 10 100 --seed 1 --out data/showers/photons.h5
omnijet tokenize data/jets/top.h5 --tokenizer data/tokenizers/vqvae_conditional_8192.pt --out data/tokens/top.h5
omnijet run-notebook notebooks/01_data.py -p n_jets 2000 --output-dir runs/01_data
omnijet run-notebook notebooks/04_generation.py --profile quick
omnijet train jet-gpt --profile cpu --epochs 20
torchrun --nproc-per-node 4 -m omnijet_lib.cli train jet-gpt --profile paper
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator

from omnijet_lib.data.jets import JETCLASS_LABELS


def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``, so that a bad count stops the command before it writes anything."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            msg = f"must be an integer >= {minimum}, got {text!r}"
            raise argparse.ArgumentTypeError(msg)
        return value

    return parse


COUNT = _at_least(1)  # numbers of jets, chunk and step sizes, workers
SEED = _at_least(0)  # numpy's SeedSequence takes no negative seed


def _generate_jets(args: argparse.Namespace) -> None:
    from omnijet_lib.data.jet_files import jet_file_info
    from omnijet_lib.data.pythia_jets import generate_jet_file

    start = time.perf_counter()
    path = generate_jet_file(
        args.process, args.n, args.out, seed=args.seed, chunk_size=args.chunk_size, n_workers=args.workers,
        detector=args.detector,
    )  # fmt: skip
    info = jet_file_info(path)
    seen_by = f" seen by the {info['detector']['name']} detector response" if "detector" in info else ""
    print(
        f"{path}: {info['n_jets']} {args.process} jets{seen_by}; {time.perf_counter() - start:.1f} s wall this run, "
        f"{info['jets_per_worker_second']:.1f} jets per second of one worker process"
    )


def _import_jetclass(args: argparse.Namespace) -> None:
    from omnijet_lib.data.jet_files import jet_file_info
    from omnijet_lib.data.jetclass import import_jetclass

    path = import_jetclass(args.files, args.out, classes=args.classes, max_jets=args.max_jets, step_size=args.step_size)
    print(f"{path}: {jet_file_info(path)['n_jets']} jets")


def _import_aspen_open_jets(args: argparse.Namespace) -> None:
    from omnijet_lib.data.aspen_open_jets import import_aspen_open_jets
    from omnijet_lib.data.jet_files import jet_file_info

    path = import_aspen_open_jets(
        args.files, args.out, max_jets=args.max_jets, step_size=args.step_size, label=args.label
    )
    print(f"{path}: {jet_file_info(path)['n_jets']} jets")


def _simulate_showers(args: argparse.Namespace) -> None:
    from omnijet_lib.data.shower_files import write_shower_chunks
    from omnijet_lib.data.shower_simulation import iter_simulated_showers

    if len(args.energy) not in (1, 2):
        msg = f"--energy takes one value or a range LOW HIGH [GeV], got {len(args.energy)} values"
        raise ValueError(msg)
    low, high = (args.energy * 2)[:2]
    start = time.perf_counter()
    chunks = iter_simulated_showers(args.n, energy=(low, high), seed=args.seed, max_hits=args.max_hits)
    provenance = {
        "generator": "omnijet GFlash photon-shower simulator",
        "seed": args.seed,
        "incident_energy_gev": [low, high],
    }
    path = write_shower_chunks(args.out, chunks, provenance=provenance)
    print(f"{path}: {args.n} photon showers, {low:g}-{high:g} GeV, in {time.perf_counter() - start:.1f} s")


def _tokenize(args: argparse.Namespace) -> None:
    from omnijet_lib.tokenizers.token_files import read_token_file, tokenize_file

    path = tokenize_file(args.jets, args.tokenizer, args.out, chunk_size=args.chunk_size)
    tokens = read_token_file(path)
    print(f"{path}: {len(tokens)} token sequences, mean length {tokens.lengths.mean():.1f} (with START and STOP)")


def _run_notebook(args: argparse.Namespace) -> None:
    from omnijet_lib.notebooks import parse_parameter, run_notebook

    parameters = {name: parse_parameter(value) for name, value in args.parameter}
    executed = run_notebook(
        args.notebook, parameters=parameters, parameter_files=args.parameters_file, profile=args.profile,
        output_dir=args.output_dir, execution_timeout=args.execution_timeout,
    )  # fmt: skip
    print(f"executed notebook: {executed}")


# What `omnijet train` trains, and the notebook whose parameters (and training) it takes.
TRAINABLE = {
    "jet-tokenizer": "02_tokenization_quality",
    "jet-gpt": "04_generation",
    "shower-tokenizer": "06_calorimeter_showers",
    "shower-gpt": "06_calorimeter_showers",
    "direct-showers": "07_direct_spatial_tokens",
    "hcal-showers": "08_hcal_pions",
    "fine-tuning": "05_transfer_learning",
}


def _arguments(function: Callable, values: dict[str, object]) -> dict[str, object]:
    """The notebook parameters ``function`` takes, by name."""
    import inspect

    return {name: values[name] for name in inspect.signature(function).parameters if name in values}


def _main_first(make: Callable[[], object]):
    """``make()`` on rank 0 while the other processes wait, then on them: files rank 0 wrote are there to read.

    (It generates, simulates or tokenizes what is missing; the others then only read.)
    """
    from omnijet_lib.training.distributed import join_processes

    processes = join_processes()
    made = make() if processes.main else None
    processes.wait_for_main()
    return made if processes.main else make()


def _report(result, processes, best_by: str = "loss") -> None:
    if processes.main:
        best = result.history[result.best_epoch]
        print(
            f"{result.best_checkpoint}: best epoch {result.best_epoch + 1} of {len(result.history)} by "
            f"{best_by}, val loss {best['val_loss']:.4f}; {processes.world_size} process(es)"
        )


def _train_jet_tokenizers(values: dict[str, object]) -> None:
    from pathlib import Path

    from omnijet_lib.notebooks import list_parameter
    from omnijet_lib.training.distributed import join_processes
    from omnijet_lib.workflows import jet_features, train_jet_tokenizer, training_config

    processes = join_processes()
    data = _main_first(lambda: jet_features(**_arguments(jet_features, values)))
    options = _arguments(train_jet_tokenizer, values) | {"progress": processes.main}
    for spec in list_parameter(values["tokenizers"], "tokenizers"):
        tokenizer = train_jet_tokenizer(spec, data, training_config(values), **options)
        if processes.main:
            path = tokenizer.save(Path(str(values["tokenizer_dir"])) / f"{spec}_seed{values['seed']}.pt")
            print(f"{spec}: {tokenizer.codebook_size} tokens, saved to {path}")
    processes.wait_for_main()


def _train_jet_gpt(values: dict[str, object]) -> None:
    from omnijet_lib.training.distributed import join_processes
    from omnijet_lib.workflows import jet_token_data, train_jet_gpt, training_config

    processes = join_processes()
    data = _main_first(lambda: jet_token_data(**_arguments(jet_token_data, values)))
    seed = values["seed"] if values["train_seed"] is None else values["train_seed"]  # as notebook 04
    training = training_config(values, seed=seed)
    _, result = train_jet_gpt(data, training, **_arguments(train_jet_gpt, values), progress=processes.main)
    _report(result, processes, str(values["best_by"]))


def _train_shower_tokenizer(values: dict[str, object]) -> None:
    from omnijet_lib.training.distributed import join_processes
    from omnijet_lib.workflows import shower_split, shower_tokenizer_file, train_shower_tokenizer, training_config

    processes = join_processes()
    split = _main_first(lambda: shower_split(**_arguments(shower_split, values)))
    training = training_config(values, epochs=values["vqvae_epochs"], batch_size=values["vqvae_batch_size"])
    options = _arguments(train_shower_tokenizer, values) | {"progress": processes.main}
    tokenizer = train_shower_tokenizer(split, training, **options)
    if processes.main:
        path = tokenizer.save(shower_tokenizer_file(values["tokenizer_dir"], values["tokenizer"], values["seed"]))
        print(f"{values['tokenizer']}: {tokenizer.codebook_size} tokens, saved to {path}")
    processes.wait_for_main()


def _train_shower_gpt(values: dict[str, object]) -> None:
    from omnijet_lib.tokenizers.token_files import tokenized
    from omnijet_lib.training.distributed import join_processes
    from omnijet_lib.workflows import shower_split, shower_tokenizer_file, train_shower_gpt, training_config

    processes = join_processes()
    tokenizer_file = shower_tokenizer_file(values["tokenizer_dir"], values["tokenizer"], values["seed"])

    def data():  # the showers, tokenized once (by rank 0) if the tokenizer is there
        split = shower_split(**_arguments(shower_split, values))
        if tokenizer_file.exists():
            tokenized(split.file, tokenizer_file, values["token_dir"])
        return split

    split = _main_first(data)
    training = training_config(values, epochs=values["gpt_epochs"], batch_size=values["gpt_batch_size"])
    options = _arguments(train_shower_gpt, values) | {"tokenizer_file": tokenizer_file, "progress": processes.main}
    _, result = train_shower_gpt(split, training, **options)
    _report(result, processes)


def _train_direct_showers(values: dict[str, object]) -> None:
    from omnijet_lib.notebooks import list_parameter
    from omnijet_lib.training.distributed import join_processes
    from omnijet_lib.workflows import shower_split, train_direct_shower_model, training_config

    processes = join_processes()
    _, showers, train_idx, val_idx, _ = _main_first(lambda: shower_split(**_arguments(shower_split, values)))
    options = _arguments(train_direct_shower_model, values) | {"progress": processes.main}
    for variant in list_parameter(values["variants"], "variants"):
        split = (showers, train_idx, val_idx, training_config(values))
        _, result = train_direct_shower_model(*split, **options | {"variant": variant})
        _report(result, processes)


def _train_fine_tuning(values: dict[str, object]) -> None:
    from omnijet_lib.models.token_classifier import TokenClassifierConfig
    from omnijet_lib.notebooks import list_parameter
    from omnijet_lib.transfer import run_scan
    from omnijet_lib.workflows import tagging_data, training_config

    data, gpt_config = _main_first(lambda: tagging_data(**_arguments(tagging_data, values)))
    # The notebook's `seed` is its data's; each cell of the scan sets its own training seed.
    training = training_config({k: v for k, v in values.items() if k != "seed"}, epochs=values["max_epochs"])
    rows = run_scan(
        data, TokenClassifierConfig(gpt=gpt_config, head=str(values["head"])),
        **{name: list_parameter(values[name], name) for name in ("sizes", "strategies", "seeds")},
        pretrained=values["pretrained"], training=training,
        scan_dir=values["scan_dir"],
    )  # fmt: skip
    print(f"{values['scan_dir']}: {len(rows)} cells in results.csv")


def _train(args: argparse.Namespace) -> None:
    from omnijet_lib.notebooks import given_parameters, notebook_parameters

    notebook = _trainable_notebook(args.model)
    options = {
        name.removeprefix(_PARAMETER): value for name, value in vars(args).items() if name.startswith(_PARAMETER)
    }
    given = given_parameters(notebook, profile=args.profile, parameter_files=args.parameters_file, parameters=options)
    values = notebook_parameters(notebook) | given
    commands = {
        "jet-tokenizer": _train_jet_tokenizers,
        "jet-gpt": _train_jet_gpt,
        "shower-tokenizer": _train_shower_tokenizer,
        "shower-gpt": _train_shower_gpt,
        "direct-showers": _train_direct_showers,
        "hcal-showers": _train_direct_showers,  # notebook 08's direct models: its parameters pick the AHCAL pions
        "fine-tuning": _train_fine_tuning,
    }
    commands[args.model](values)


_PARAMETER = "parameter:"  # the namespace prefix of a notebook parameter given as --NAME VALUE


def _trainable_notebook(model: str):
    from omnijet_lib.notebooks import project_root

    return project_root() / "notebooks" / f"{TRAINABLE[model]}.py"


def _add_train_command(commands) -> None:
    from omnijet_lib.notebooks import notebook_parameters, parameter_comments, parse_parameter

    description = (
        "Train a model as its notebook does, with the notebook's parameters (defaults, then --profile, then -f "
        "files, then --NAME VALUE), alone or under torchrun, data-parallel:\n"
        "    torchrun --nproc-per-node 4 -m omnijet_lib.cli train jet-gpt --profile paper\n"
        "The notebook then finds the finished run in its run_dir.  Parameters that are not about training "
        "(generation, plots) are accepted and ignored.\n"
    )
    epilog = "\n".join(
        f"{model} (notebook {stem}), its parameters and their defaults:\n"
        + "\n".join(
            f"    --{name} {default!r}" for name, default in notebook_parameters(_trainable_notebook(model)).items()
        )
        for model, stem in TRAINABLE.items()
    )
    train = commands.add_parser(
        "train", help="train a model with its notebook's parameters, alone or under torchrun",
        description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    models = train.add_subparsers(dest="model", required=True, metavar="MODEL")
    for model, stem in TRAINABLE.items():
        notebook = _trainable_notebook(model)
        sub = models.add_parser(
            model, help=f"notebook {stem}'s model", description=description, formatter_class=argparse.RawTextHelpFormatter,
        )  # fmt: skip
        sub.add_argument("-f", "--parameters-file", action="append", default=[], metavar="YAML",
                         help="a YAML file of parameters (several: later ones override)")  # fmt: skip
        sub.add_argument(
            "--profile", default=None, help="notebooks/profiles/<PROFILE>/<notebook>.yaml: quick, cpu, paper"
        )
        comments = parameter_comments(notebook)
        for name, default in notebook_parameters(notebook).items():
            sub.add_argument(
                f"--{name}", dest=_PARAMETER + name, type=parse_parameter, default=argparse.SUPPRESS, metavar="VALUE",
                help=f"{comments.get(name, '')} (default: {default!r})",
            )  # fmt: skip
        sub.set_defaults(func=_train)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="omnijet", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    from omnijet_lib.data.detector_response import DETECTORS

    gen = commands.add_parser(
        "generate-jets", help="generate top, QCD or detector-level dijet jets with Pythia 8 + FastJet (resumable)"
    )
    gen.add_argument("--process", choices=("top", "qcd", "dijet"), required=True,
                     help="top, qcd: 500-1000 GeV, generator level; dijet: generic jets of 300-1500 GeV (docs/jets.md)")  # fmt: skip
    gen.add_argument("--detector", choices=("default", "none", *DETECTORS), default="default",
                     help="detector response applied before clustering (default: the process's own, "
                          "cms for dijet, none for top and qcd)")  # fmt: skip
    gen.add_argument("--n", type=COUNT, required=True, help="number of jets")
    gen.add_argument("--seed", type=SEED, required=True)
    gen.add_argument("--out", required=True, help="output HDF5 file")
    gen.add_argument("--workers", type=COUNT, default=None, help="worker processes (default: all cores)")
    gen.add_argument("--chunk-size", type=COUNT, default=500, help="jets per resumable chunk")
    gen.set_defaults(func=_generate_jets)

    imp = commands.add_parser("import-jetclass", help="convert JetClass ROOT files to the project's HDF5 schema")
    imp.add_argument("files", nargs="+", help="ROOT files or glob patterns (quote them)")
    imp.add_argument("--out", required=True)
    imp.add_argument("--classes", nargs="+", choices=JETCLASS_LABELS, default=None, help="default: all")
    imp.add_argument("--max-jets", type=COUNT, default=None, help="default: all")
    imp.add_argument("--step-size", type=COUNT, default=100_000, help="entries read at a time")
    imp.set_defaults(func=_import_jetclass)

    aoj = commands.add_parser(
        "import-aspen-open-jets", help="convert Aspen Open Jets HDF5 files (CMS 2016 Open Data) to the project's schema"
    )
    aoj.add_argument("files", nargs="+", help="AOJ .h5 files or glob patterns (quote them)")
    aoj.add_argument("--out", required=True)
    aoj.add_argument("--max-jets", type=COUNT, default=None, help="default: all")
    aoj.add_argument("--step-size", type=COUNT, default=100_000, help="jets read at a time")
    aoj.add_argument("--label", choices=JETCLASS_LABELS, default=None,
                     help="class given to every jet (default: unlabelled, -1; AOJ has no truth label)")  # fmt: skip
    aoj.set_defaults(func=_import_aspen_open_jets)

    sim = commands.add_parser("simulate-showers", help="simulate photon showers in the ILD-like ECAL (GFlash)")
    sim.add_argument("--n", type=COUNT, required=True, help="number of showers")
    sim.add_argument("--energy", type=float, nargs="+", default=[10.0, 100.0], metavar="GEV",
                     help="incident energy: one value, or a range LOW HIGH drawn uniformly (default 10 100)")  # fmt: skip
    sim.add_argument("--seed", type=SEED, required=True)
    sim.add_argument("--max-hits", type=COUNT, default=1700, help="hits kept per shower, the most energetic")
    sim.add_argument("--out", required=True, help="output HDF5 file (reference shower layout)")
    sim.set_defaults(func=_simulate_showers)

    tok = commands.add_parser("tokenize", help="tokenize a jet or shower file once with a saved tokenizer (GPT input)")
    tok.add_argument("jets", help="jet or shower file (HDF5), as the tokenizer was trained on")
    tok.add_argument("--tokenizer", required=True, help="saved tokenizer file (.pt)")
    tok.add_argument("--out", required=True, help="output token file (HDF5)")
    tok.add_argument("--chunk-size", type=COUNT, default=None, help="jets or showers read and encoded at a time")
    tok.set_defaults(func=_tokenize)

    run = commands.add_parser("run-notebook", help="execute a jupytext notebook headless with papermill")
    run.add_argument("notebook")
    run.add_argument(
        "-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
        help="a notebook parameter (VALUE parsed as JSON if it can be); overrides -f and --profile",
    )  # fmt: skip
    run.add_argument("-f", "--parameters-file", action="append", default=[], metavar="YAML",
                     help="a YAML file of parameters, as papermill's -f (several: later ones override)")  # fmt: skip
    run.add_argument("--profile", default=None, help="notebooks/profiles/<PROFILE>/<notebook>.yaml: quick, cpu, paper")
    run.add_argument("--output-dir", default=None)
    run.add_argument("--execution-timeout", type=float, default=None, metavar="SECONDS",
                     help="stop with an error when one cell runs longer")  # fmt: skip
    run.set_defaults(func=_run_notebook)

    _add_train_command(commands)
    return parser


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM (``kill``, a batch system's time limit) acts as Ctrl-C.

    So the same cleanup runs: Pythia workers are stopped, half-written files
    removed, and papermill shuts down the notebook's kernel, which would
    otherwise go on training with nobody to read its results.
    """

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    in_main_thread = threading.current_thread() is threading.main_thread()  # where signal handlers can be set
    previous = signal.signal(signal.SIGTERM, interrupt) if in_main_thread else None
    try:
        yield
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with _terminate_as_interrupt():
            args.func(args)
    except KeyboardInterrupt:
        print("interrupted: run the same command again to continue", file=sys.stderr)
        return 130
    except (OSError, KeyError, ValueError) as err:
        print(f"omnijet {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
