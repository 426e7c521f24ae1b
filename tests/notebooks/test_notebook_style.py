"""How the notebooks read: calls a reader can parse (no call passes more than three positional arguments)."""
import ast
import re

import nbformat
import pytest

from hneuron_utils.paths import project_root

NOTEBOOKS = sorted((project_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MAX_POSITIONAL = 3


def _code(path) -> str:
    nb = nbformat.read(path, as_version=4)
    # IPython magics and shell lines are not Python
    return "\n".join(re.sub(r"(?m)^\s*[%!].*$", "", c.source) for c in nb.cells if c.cell_type == "code")


def long_positional_calls(source: str, limit: int = MAX_POSITIONAL) -> list[str]:
    """Every call in ``source`` with more than ``limit`` positional arguments, as 'line: call'."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and len(node.args) > limit:
            out.append(f"{node.lineno}: {ast.unparse(node.func)}({len(node.args)} positional)")
    return out


def test_the_counter_sees_long_positional_calls():
    assert long_positional_calls("f(1, 2, 3)\ng(a, b, c, d)\nh(a, b, *c)") == ["2: g(4 positional)"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_notebook_call_passes_more_than_three_positional_arguments(path):
    assert long_positional_calls(_code(path)) == []
