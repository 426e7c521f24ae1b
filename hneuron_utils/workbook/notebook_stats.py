"""Readability figures of the numbered notebooks: code lines per code cell (median, max), markdown
characters per code character, and cells over the limit (20 lines).

    python -m hneuron_utils.workbook.notebook_stats [--dir notebooks]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from hneuron_utils.paths import project_root


def code_lines(src: str) -> int:
    """Non-blank lines of a code cell (comments count: they are what a reader reads)."""
    return sum(1 for line in src.splitlines() if line.strip())


def stats(path: Path) -> dict:
    """Per-notebook figures; the tagged parameters cell is excluded (it is a listing, not a step)."""
    nb = json.loads(path.read_text())
    code, md, long_cells = [], 0, []
    code_chars = 0
    for i, c in enumerate(nb["cells"]):
        src = "".join(c["source"])
        if c["cell_type"] == "markdown":
            md += len(src)
        elif c["cell_type"] == "code":
            if "parameters" in c.get("metadata", {}).get("tags", []):
                continue
            n = code_lines(src)
            code.append(n)
            code_chars += len(src)
            if n > 20:
                long_cells.append(i)
    return {"notebook": path.name, "code cells": len(code), "median lines": statistics.median(code) if code else 0,
            "max lines": max(code, default=0), "prose per code char": round(md / max(code_chars, 1), 2),
            "cells over 20": long_cells}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hneuron_utils.workbook.notebook_stats",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default=str(project_root() / "notebooks"))
    args = ap.parse_args(argv)
    for p in sorted(Path(args.dir).glob("[0-9][0-9]_*.ipynb")):
        print(stats(p))
    return 0


if __name__ == "__main__":
    sys.exit(main())
