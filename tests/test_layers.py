"""The package's layers: no import runs back up (omnijet_lib.LAYERS), no circle of imports, no module too long to read."""

import ast
from pathlib import Path

import pytest

import omnijet_lib
from omnijet_lib import LAYERS

PACKAGE = Path(omnijet_lib.__file__).parent
MAX_LINES = 600  # a module longer than this holds more than one idea


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def resolve(name: str) -> str:
    """The module an import names: ``omnijet_lib.training.train`` is ``omnijet_lib.training``."""
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def imports(module: str) -> set[str]:
    """Every omnijet_lib module ``module`` imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("omnijet_lib"):
            found |= {resolve(f"{node.module}.{alias.name}") for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {resolve(alias.name) for alias in node.names if alias.name.startswith("omnijet_lib")}
    found.discard(module)
    return found


def layer(module: str) -> int:
    """The index in LAYERS of the group ``module`` belongs to (by its first name below omnijet_lib)."""
    top = module.split(".")[1] if module != "omnijet_lib" else ""
    for index, group in enumerate(LAYERS):
        if top in group:
            return index
    raise AssertionError(f"{module} belongs to no layer of omnijet_lib.LAYERS: add it there")


GRAPH = {module: imports(module) for module in MODULES}


def test_every_module_has_a_layer_and_every_layer_entry_exists():
    for module in MODULES:
        if module != "omnijet_lib":
            layer(module)
    named = {name for group in LAYERS for name in group}
    present = {module.split(".")[1] for module in MODULES if module != "omnijet_lib"}
    assert named == present, f"LAYERS names {sorted(named - present)} that do not exist"


@pytest.mark.parametrize("module", [m for m in MODULES if m != "omnijet_lib"])
def test_no_import_runs_up_the_layers(module):
    upward = sorted(target for target in GRAPH[module] if target != "omnijet_lib" and layer(target) > layer(module))
    assert not upward, f"{module} (layer {LAYERS[layer(module)]}) imports from higher layers: {upward}"


def test_no_circle_of_imports():
    """A package importing its own modules (its __init__) is no circle; module -> ... -> module is."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = "open"
        path.append(module)
        for target in sorted(GRAPH[module]):
            if module.startswith(target + "."):  # a module importing its own package's __init__
                continue
            if state.get(target) == "open":
                circle = path[path.index(target) :] + [target]
                raise AssertionError("import circle: " + " -> ".join(circle))
            if target not in state:
                visit(target)
        path.pop()
        state[module] = "done"

    for module in MODULES:
        if module not in state:
            visit(module)


def test_no_module_is_too_long_to_read():
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_checker_sees_an_upward_import(tmp_path, monkeypatch):
    """The walk finds imports inside functions too, which is where an upward import would hide."""
    fake = tmp_path / "omnijet_lib" / "data" / "sneaky.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("def f():\n    from omnijet_lib.training import train\n    return train\n")
    monkeypatch.setitem(MODULES, "omnijet_lib.data.sneaky", fake)
    assert imports("omnijet_lib.data.sneaky") == {"omnijet_lib.training"}
    assert layer("omnijet_lib.training") > layer("omnijet_lib.data.sneaky")
