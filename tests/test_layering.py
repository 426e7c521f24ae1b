"""The package has three layers and imports only run downwards: core ← methods ← workbook.

- core: models, text, data, judges, statistics, the stage cache, paths, sample-size checks;
- methods: CETT features, probes, interventions, the monitor, introspection, training;
- workbook: notebook bookkeeping, the runner, figures, readouts.

Every import counts, including those inside functions. No ``__init__.py`` holds logic beyond re-exports.
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hneuron_utils"
LAYERS = {
    "core": {"models", "text", "data", "judges", "stats", "cache", "paths", "checks", "progress"},
    "methods": {"features", "probes", "interventions", "monitor", "introspection", "training"},
    "workbook": {"workbook"},
}
RANK = {part: i for i, names in enumerate(LAYERS.values()) for part in names}


def _part(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imported_parts(path: Path, source: str | None = None) -> list[tuple[int, str]]:
    """(line, top-level part of hneuron_utils) for every package import in ``path``, relative ones resolved."""
    rel = path.relative_to(PACKAGE)
    here = list(rel.parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name.split(".")[1]) for a in node.names if a.name.startswith("hneuron_utils.")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - node.level + 1]
                mods = base + (node.module.split(".") if node.module else [])
                targets = [mods[0]] if mods else [a.name for a in node.names]
            elif node.module == "hneuron_utils":
                targets = [a.name for a in node.names]
            elif node.module and node.module.startswith("hneuron_utils."):
                targets = [node.module.split(".")[1]]
            else:
                targets = []
            out += [(node.lineno, t) for t in targets]
    return out


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def test_every_part_of_the_package_has_a_layer():
    parts = {_part(p) for p in MODULES}
    assert parts <= set(RANK), f"modules without a layer: {parts - set(RANK)}"


def test_the_import_reader_sees_relative_and_function_level_imports():
    src = "import hneuron_utils.stats\ndef f():\n    from hneuron_utils.workbook import run\nfrom ..probes import probe\n"
    got = sorted(imported_parts(PACKAGE / "features" / "cett.py", source=src))
    assert got == [(1, "stats"), (3, "workbook"), (4, "probes")]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_only_run_downwards(path):
    mine = RANK[_part(path)]
    up = [f"line {line}: {part}" for line, part in imported_parts(path) if part in RANK and RANK[part] > mine]
    assert not up, f"{path.relative_to(PACKAGE)} (a {list(LAYERS)[mine]} module) imports from a higher layer: {up}"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("__init__.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_init_files_only_re_export(path):
    tree = ast.parse(path.read_text())
    logic = [type(n).__name__ for n in tree.body
             if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.For, ast.While, ast.With))]
    assert not logic, f"{path.relative_to(PACKAGE)} holds logic: {logic}"


def test_no_module_is_described_after_a_notebook():
    named = []
    for p in MODULES:
        doc = ast.get_docstring(ast.parse(p.read_text())) or ""
        first = doc.split("\n\n")[0].lower()
        if "notebook 0" in first or "notebook's" in first and p.parent.name != "workbook":
            named.append(str(p.relative_to(PACKAGE)))
    assert not named, f"module summaries named after a notebook: {named}"


MAX_POSITIONAL_PARAMETERS = 5


def test_package_functions_take_parameters_after_the_fifth_by_keyword():
    long = []
    for p in MODULES:
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                pos = [a.arg for a in n.args.posonlyargs + n.args.args]
                if pos and pos[0] in ("self", "cls"):
                    pos = pos[1:]
                if len(pos) > MAX_POSITIONAL_PARAMETERS:
                    long.append(f"{p.relative_to(PACKAGE)}:{n.lineno} {n.name} ({len(pos)} positional)")
    assert not long, long


def test_no_sentences_below_the_workbook():
    """The methods and the core return data; sentences that read results live in ``workbook/readouts.py``."""
    writers = []
    for p in MODULES:
        if RANK[_part(p)] == RANK["workbook"]:
            continue
        for n in ast.parse(p.read_text()).body:
            if isinstance(n, ast.FunctionDef) and n.returns is not None:
                returns = ast.unparse(n.returns)
                wordy = n.name.startswith("read_") or n.name.endswith("words") or n.name == "summary"
                if wordy and returns in ("str", "list[str]"):
                    writers.append(f"{p.relative_to(PACKAGE)}:{n.lineno} {n.name}")
    assert not writers, writers
