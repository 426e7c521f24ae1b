"""Running a notebook's cells inside a test: the method cells are tested as they stand in the notebook
(importable because ``tests/`` holds the root conftest)."""
import linecache

import nbformat


def cells(path) -> list:
    """The notebook's cells."""
    return nbformat.read(path, as_version=4).cells


def run_cells(path, ids: list[str], ns: dict) -> dict:
    """Execute the code cells ``ids`` of ``path`` in ``ns`` (their source registered with linecache, as
    IPython does, so that nnsight can read a trace's body)."""
    by_id = {c.id: c for c in cells(path)}
    for cid in ids:
        src = by_id[cid].source
        name = f"<{path.stem}:{cid}>"
        linecache.cache[name] = (len(src), None, src.splitlines(True), name)
        exec(compile(src, name, "exec"), ns)
    return ns


def position(path, needle: str) -> int:
    """The index of the first code cell whose source contains ``needle``."""
    return next(i for i, c in enumerate(cells(path)) if c.cell_type == "code" and needle in c.source)
