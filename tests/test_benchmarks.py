"""Every benchmark's ``--quick`` runs end to end and prints the table it promises, so that no benchmark rots.

Each script runs as a user runs it: a subprocess of this interpreter in the project root, one thread.
The checks read the printed table (row names, column headers, ratio lines) and parse numbers from it:
a rate or a time must be a positive number, not merely present.  Timings themselves are not judged.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
NUMBER = r"[-+]?(?:\d+\.?\d*|nan|inf)"


def repository_outputs() -> set[Path]:
    """The files in the repository's generated folders, which a --quick run must leave alone."""
    return {path for folder in ("data", "figures", "runs") for path in (ROOT / folder).rglob("*")}


def run_quick(script: str, *arguments: str, timeout: float = 600) -> str:
    """``benchmarks/<script> --quick``: its standard output, after checking it succeeded and wrote nothing here."""
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    before = repository_outputs()
    command = [sys.executable, str(BENCHMARKS / script), "--quick", *arguments]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{script} --quick failed (exit {done.returncode}):\n{done.stderr[-3000:]}"
    assert repository_outputs() == before, f"{script} --quick wrote into data/, figures/ or runs/"
    return done.stdout


def numbers(line: str) -> list[float]:
    return [float(value) for value in re.findall(NUMBER, line)]


def rows(output: str, first_column: str) -> list[list[str]]:
    """The lines starting with ``first_column`` (a row name with blanks in it), the rest split on blanks."""
    found = []
    for line in output.splitlines():
        if line.startswith(first_column):
            found.append([first_column, *line[len(first_column) :].split()])
    return found


def test_every_benchmark_has_a_quick_test():
    scripts = {path.stem for path in BENCHMARKS.glob("*.py")}
    tested = {name[len("test_") :] for name in globals() if name.startswith("test_")}
    assert scripts <= tested, f"benchmarks without a --quick test: {sorted(scripts - tested)}"
    for path in BENCHMARKS.glob("*.py"):  # and its docstring's usage lines say how to run it
        assert f"benchmarks/{path.name} --quick" in path.read_text(), f"{path.name}: --quick not in its usage"


def _nearest_code_table(output: str, k: int) -> None:
    """The nearest_code.py table at one codebook size K: a time and a peak per method, and the speed ratio."""
    assert re.search(r"^method\s+K\s+ms\s+peak MB$", output, re.MULTILINE), output
    methods = ["nearest_code (ours)", "torch.cdist + argmin"]
    if importlib.util.find_spec("vector_quantize_pytorch"):  # the dev extra
        methods.append("vector-quantize-pytorch")
    for method in methods:
        (row,) = rows(output, method)
        assert int(row[1]) == k, row
        milliseconds, peak_mb = float(row[2]), float(row[3])
        assert milliseconds > 0 and peak_mb >= 0, row
    ratio = re.search(rf"^K = {k}: speed of ours / speed of cdist \+ argmin = ({NUMBER})$", output, re.MULTILINE)
    assert ratio and 0 < float(ratio[1]) < math.inf, output


def test_nearest_code():
    output = run_quick("nearest_code.py")
    assert "nearest-code search: N = 4096 vectors" in output
    _nearest_code_table(output, 1024)
    assert "failed" not in output, output


def test_shower_simulation():
    output = run_quick("shower_simulation.py")
    rate = re.search(rf"^\s+({NUMBER}) showers/s wall \(({NUMBER}) s\), ({NUMBER}) showers/s CPU", output, re.MULTILINE)
    assert rate and float(rate[1]) > 0 and float(rate[3]) > 0, output
    header = ("E [GeV]", "hits>0.1MeV", "cells>0", "sum [MeV]", "sum s/m", "calibrated s/m", "hottest [MeV]")
    header_line = "".join(f"{h:>15}" for h in header)
    assert header_line in output.splitlines(), output
    table = output.splitlines()[output.splitlines().index(header_line) + 1 :]
    values = {row[0]: row[1:] for row in (numbers(line) for line in table if line.strip())}
    assert sorted(values) == [10, 50, 100], output
    for energy, (hits, cells, energy_sum, spread, calibrated_spread, hottest) in values.items():
        assert 0 < hits <= cells and 0 < hottest < energy_sum, (energy, values[energy])
        assert 0 < calibrated_spread and 0 < spread < 1, (energy, values[energy])
    assert values[10][2] < values[50][2] < values[100][2], "the visible energy grows with the photon's"


@pytest.mark.slow
def test_pion_simulation():
    output = run_quick("pion_simulation.py")
    assert re.search(rf"^  ({NUMBER}) showers/s wall", output, re.MULTILINE)
    assert "early-start resolution fit" in output


def test_tokenization():
    output = run_quick("tokenization.py")
    assert re.search(r"tokenization throughput: 50 top jets, [\d.]+ constituents each", output), output
    assert re.search(r"^tokenizer\s+size\s+tokens\s+encode jets/s\s+decode jets/s$", output, re.MULTILINE), output
    expected = {
        ("binned-5", "-"): 125,
        **{(spec, size): 32 for spec in ("unconditional-32", "conditional-32") for size in ("paper", "cpu")},
    }
    found = {}
    for spec, _ in expected:
        for row in rows(output, spec + " "):
            found[spec, row[1]] = row
    assert set(found) == set(expected), output
    for key, row in found.items():
        assert int(row[2]) == expected[key], row
        assert float(row[3]) > 0 and float(row[4]) > 0, row
    search = output[output.index("nearest-code search") :]  # the second table: nearest_code.py --quick
    _nearest_code_table(search, 1024)


@pytest.mark.slow
def test_token_file_memory():
    output = run_quick("token_file_memory.py")
    assert "token files: 100 real Pythia jets (top + QCD, seed 1), binned tokenizer of 512 codes" in output
    header = r"sequences\s+mode\s+file MB\s+peak RSS\s+VmRSS\s+RssAnon\s+set-up s\s+s/step\s+64-row read ms"
    assert re.search(header, output), output
    table = {}
    for line in output.splitlines():
        match = re.match(rf"^\s+(\d+)\s+(streamed|in memory)((?:\s+{NUMBER}){{7}})$", line)
        if match:
            table[int(match[1]), match[2]] = numbers(match[3])
    assert set(table) == {(1000, "streamed"), (1000, "in memory"), (3000, "streamed")}, output
    for key, (file_mb, peak, vm_rss, rss_anon, setup, step, read_ms) in table.items():
        assert file_mb >= 0 and peak >= vm_rss > 0 and rss_anon > 0, (key, table[key])
        assert setup > 0 and step > 0 and read_ms >= 0, (key, table[key])
    assert re.search(r"a fresh process holds ~\d+ MB after its imports", output), output


@pytest.mark.slow
def test_generation():
    output = run_quick("generation.py")
    sections = dict(
        re.findall(r"^== (jets|showers per second|showers|profile)(.*?)(?=^== |\Z)", output, re.MULTILINE | re.DOTALL)
    )
    assert set(sections) == {"jets", "showers", "showers per second", "profile"}, output
    for case, references in (("jets", ["whole", "integrated"]), ("showers", ["integrated"])):
        text = sections[case]
        assert re.search(r"^method\s+batch\s+ms/step\s+ms/token\s+ms/sequence\s+speed-up\s+note$", text, re.MULTILINE)
        for reference in references:
            (row,) = re.findall(rf"^\(a\) reference, {reference}\s+2((?:\s+{NUMBER}){{4}})x", text, re.MULTILINE)
            assert all(value > 0 for value in numbers(row)), (case, row)
        for precision in ("", " bf16"):  # --precisions fp32 bf16 by default
            found = re.findall(rf"^\(b\) generate_batch{precision}\s+(\d+)((?:\s+{NUMBER}){{4}})x", text, re.MULTILINE)
            ours = {int(batch): numbers(rest) for batch, rest in found}
            assert ours and all(value > 0 for row in ours.values() for value in row), (case, precision, ours)
        assert re.search(r"^speed-up = \(a\) ms/token / \(b\) ms/token", text, re.MULTILINE), text
        assert re.search(rf"arithmetic floor ({NUMBER}) ms/token at \d+ GFLOP/s", text), text
        if case == "jets":
            assert sorted(ours) == [1, 64], ours
    assert re.search(r"^\(sum of ops\)\s+(\d+)$", sections["profile"], re.MULTILINE), sections["profile"]
    target = rf"^at least 20x faster than \(a\) for jets at batch 64: ({NUMBER})x -> (met|NOT met)$"
    speed_up = re.search(target, output, re.MULTILINE)
    assert speed_up, output
    assert float(speed_up[1]) > 1, "the key/value cache is not faster than recomputing everything"
    floor = (
        rf"^within 2x of the float32 arithmetic floor, (jets|showers) batch (\d+), (fp32|bf16): ({NUMBER}) / "
        rf"({NUMBER}) ms per token"
    )
    floors = re.findall(floor, output, re.MULTILINE)
    assert {(case, precision) for case, _, precision, *_ in floors} == {
        (case, precision) for case in ("jets", "showers") for precision in ("fp32", "bf16")
    }, output
    assert all(float(ours) > 0 and float(arithmetic) > 0 for *_, ours, arithmetic in floors), floors
    # showers per second: both shower models at each batch and precision, and their targets
    rows = re.findall(
        rf"^(VQ-token GPT, paper size|direct tokens, notebook 07)\s+(fp32|bf16)\s+(\d+)\s+({NUMBER})\s+({NUMBER})",
        sections["showers per second"], re.MULTILINE,
    )  # fmt: skip
    assert len(rows) == 2 * 2 * 2, sections["showers per second"]  # models x batches (2, 8) x precisions
    assert all(abs(float(per_shower) * float(rate) - 1) < 0.01 for *_, per_shower, rate in rows), rows
    assert len(re.findall(r"s per shower, batch \d+, (fp32|bf16): .* -> (met|NOT met)$", output, re.MULTILINE)) == 8
    assert "not at their sizes" in output  # --quick caps the showers


@pytest.mark.slow
def test_generation_fidelity(tmp_path):
    """Notebook 02 (the tokenizer) and one tiny point of notebook 04, through the project's runner."""
    output = run_quick("generation_fidelity.py", "--out", str(tmp_path))
    lines = output.splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    ratios = [f"{name} ratio" for name in ("multiplicity", "jet_mass", "jet_tau21", "jet_tau32")]
    assert header == [
        "tokenizer", "training jets", "epochs", "jet-epochs", "multiplicity token", "seeds", "AUC",
        *ratios, "W1m [GeV]", "training [min]",
    ], lines[0]  # fmt: skip
    assert set(lines[1]) == {"|", "-"}
    table = [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[2:]]
    assert len(table) == 1, f"one grid point, one row:\n{output}"
    row = table[0]
    assert [row[name] for name in header[:6]] == ["conditional-32", "40", "2", "80", "yes", "1"], row
    # the table holds what the notebook measured at that point (one seed: no spread yet)
    metrics = json.loads((tmp_path / "conditional-32_n40_e2_m1_s1" / "metrics.json").read_text())
    assert row["AUC"] == f"{metrics['classifier']['auc']:.3f} ± nan", row
    for name, ratio in zip(("multiplicity", "jet_mass", "jet_tau21", "jet_tau32"), ratios):  # generated over real
        assert row[ratio] == f"{metrics['mean_ratios'][name]:.3f} ± nan", row
    assert float(row["training [min]"]) >= 0, row
