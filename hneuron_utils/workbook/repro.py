"""Cross-run check of the H-neuron set: re-run notebooks 02–03 from an empty stage cache, with another
CETT batch size, on a run's own dataset, and compare the H-neuron sets.

    python -m hneuron_utils.workbook.repro --run default [--batch-size 8]

The re-run goes to ``results/<run>-repro/`` with a fresh temporary stage cache (the model cache is
shared, read-only use), so nothing of the first run's features can be reused. Writes
``results/<run>/tables/03_cross_run.csv``: both set sizes, their Jaccard overlap and the largest
difference in test AUROC.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from hneuron_utils.workbook.paths import cache_root, run_dir
from hneuron_utils.probes.probe import jaccard


def compare_runs(a: Path, b: Path) -> dict[str, float]:
    """Set sizes, Jaccard overlap and H-neuron test AUROC of two runs' ``03`` outputs."""
    ha, hb = (pd.read_csv(r / "data" / "03_h_neurons.csv") for r in (a, b))
    ta, tb = (pd.read_csv(r / "tables" / "03_headline.csv").iloc[0] for r in (a, b))
    return {"run": a.name, "re-run": b.name, "H-neurons (run)": len(ha), "H-neurons (re-run)": len(hb),
            "C (run)": float(ta["C"]), "C (re-run)": float(tb["C"]),
            "jaccard": jaccard(ha.flat_index, hb.flat_index),
            "H AUROC (run)": float(ta["H AUROC"]), "H AUROC (re-run)": float(tb["H AUROC"])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hneuron_utils.workbook.repro", description=__doc__.split("\n")[0])
    ap.add_argument("--run", default="default", help="the run whose 01 dataset and 03 result are checked")
    ap.add_argument("--profile", default=None, help="profile of that run (default: params/<run>.yaml)")
    ap.add_argument("--batch-size", type=int, default=8, help="cett_batch_size of the re-run")
    args = ap.parse_args(argv)
    from hneuron_utils.workbook import run as runner

    src = run_dir(args.run)
    dst = run_dir(f"{args.run}-repro")
    for sub in ("data", "tables"):
        (dst / sub).mkdir(parents=True, exist_ok=True)
    for f in ("01_examples.jsonl", "01_looked.jsonl"):
        shutil.copy2(src / "data" / f, dst / "data" / f)
    stage_cache = Path(tempfile.mkdtemp(prefix="hneuron-repro-"))
    (stage_cache / "models").symlink_to(cache_root() / "models")
    old = os.environ.get("HNEURON_CACHE")
    os.environ["HNEURON_CACHE"] = str(stage_cache)
    try:
        runner.run(args.profile or args.run, only=["02", "03"], run_name=dst.name,
                   overrides={"cett_batch_size": args.batch_size, "figures_dir": None})
    finally:
        if old is None:
            os.environ.pop("HNEURON_CACHE")
        else:
            os.environ["HNEURON_CACHE"] = old
        shutil.rmtree(stage_cache, ignore_errors=True)
    row = compare_runs(src, dst) | {"cett_batch_size (re-run)": args.batch_size}
    pd.DataFrame([row]).to_csv(src / "tables" / "03_cross_run.csv", index=False)
    print(pd.Series(row).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
