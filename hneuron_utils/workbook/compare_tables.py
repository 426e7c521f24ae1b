"""Compare every result table of two runs (e.g. the smoke run of two fresh clones on empty caches).

    python -m hneuron_utils.workbook.compare_tables CLONE_A/results/smoke CLONE_B/results/smoke

Prints, per table: identical, or which columns differ and by how much (numbers: the largest absolute
difference; text: the number of differing cells). Timing tables and columns (seconds, minutes, "time")
differ by nature and are reported separately. Exit status 0 if every non-timing table is identical.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

TIMING_WORDS = ("second", "seconds", "minutes", "time", "timing", "load seconds", "/s")


def _is_timing(name: str) -> bool:
    n = str(name).lower()
    return any(w in n for w in TIMING_WORDS)


def compare(a: Path, b: Path) -> tuple[list[str], bool]:
    lines, same = [], True
    for fa in sorted((a / "tables").glob("*.csv")):
        fb = b / "tables" / fa.name
        if not fb.exists():
            lines.append(f"{fa.name}: missing in {b}")
            same = False
            continue
        ta, tb = pd.read_csv(fa), pd.read_csv(fb)
        timing_table = _is_timing(fa.stem)
        if ta.shape != tb.shape or list(ta.columns) != list(tb.columns):
            lines.append(f"{fa.name}: shapes differ {ta.shape} vs {tb.shape}")
            same = same and timing_table
            continue
        diffs = []
        for c in ta.columns:
            x, y = ta[c], tb[c]
            # a table whose rows are keyed by a timing label ("seconds", "model load seconds") differs there by nature
            rows_timing = ta.iloc[:, 0].astype(str).map(_is_timing) if c != ta.columns[0] else pd.Series(False, index=ta.index)
            if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y) and not (
                    pd.api.types.is_bool_dtype(x) or pd.api.types.is_bool_dtype(y)):
                d = (x - y).abs()
                bad = ~((x == y) | (x.isna() & y.isna()))
            else:
                bad = ~((x.astype(str) == y.astype(str)) | (x.isna() & y.isna()))  # str dtype keeps NaN
                d = None
            timing_only = _is_timing(c) or timing_table or bool(bad[~rows_timing].sum() == 0)
            if bad.any():
                what = f"max |diff| {np.nanmax(d[bad]):.3g}" if d is not None else f"{int(bad.sum())} cells"
                diffs.append(f"{c} ({what}{'; timing' if timing_only else ''})")
                same = same and timing_only
        lines.append(f"{fa.name}: " + ("identical" if not diffs else "differs in " + ", ".join(diffs)))
    return lines, same


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hneuron_utils.workbook.compare_tables",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    args = ap.parse_args(argv)
    lines, same = compare(args.a, args.b)
    print("\n".join(lines))
    print("every non-timing table identical" if same else "SOME TABLES DIFFER")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
