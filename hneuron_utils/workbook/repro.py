"""Reproducibility checks of a run.

Cross-run check of the H-neuron set: re-run notebooks 02–03 from an empty stage cache, with another
CETT batch size, on a run's own dataset, and compare the H-neuron sets.

    python -m hneuron_utils.workbook.repro --run default [--batch-size 8]

Dataset check on this machine: re-draw notebook 01's greedy screen and K samples for the first questions
of a run's walk through the pool, on an empty stage cache, and count how many outcomes differ from the
run's own (``01_looked.jsonl``). bfloat16 matmul kernels differ by processor (AMX, AVX512-BF16, AVX2), so
a run made elsewhere need not be redrawn identically here; this measures by how much.

    python -m hneuron_utils.workbook.repro --run default --dataset 200 [--sampled 100] [--dtype bfloat16]

The re-run goes to ``results/<run>-repro/`` with a fresh temporary stage cache (the model cache is
shared, read-only use), so nothing of the first run's features can be reused. Writes
``results/<run>/tables/03_cross_run.csv``: both set sizes, their Jaccard overlap and the largest
difference in test AUROC.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from hneuron_utils.workbook import env
from hneuron_utils.paths import link_model_dirs, run_dir
from hneuron_utils.probes.probe import jaccard


def compare_runs(a: Path, b: Path) -> dict[str, float]:
    """Set sizes, Jaccard overlap and H-neuron test AUROC of two runs' ``03`` outputs."""
    ha, hb = (pd.read_csv(r / "data" / "03_h_neurons.csv") for r in (a, b))
    ta, tb = (pd.read_csv(r / "tables" / "03_headline.csv").iloc[0] for r in (a, b))
    return {"run": a.name, "re-run": b.name, "H-neurons (run)": len(ha), "H-neurons (re-run)": len(hb),
            "C (run)": float(ta["C"]), "C (re-run)": float(tb["C"]),
            "jaccard": jaccard(ha.flat_index, hb.flat_index),
            "H AUROC (run)": float(ta["H AUROC"]), "H AUROC (re-run)": float(tb["H AUROC"])}


@contextlib.contextmanager
def isolated_stage_cache(prefix: str = "hneuron-isolated-", keep: Path | None = None):
    """An empty temporary stage cache that shares the model files of the real one
    (:data:`~hneuron_utils.paths.MODEL_DIRS`); removed afterwards. With ``keep``, that folder is the
    stage cache instead, made if missing and kept, so an interrupted measurement resumes from it."""
    if keep is None:
        stage_cache = Path(tempfile.mkdtemp(prefix=prefix))
        link_model_dirs(stage_cache)
    else:
        stage_cache = keep
        keep.mkdir(parents=True, exist_ok=True)
        if not (keep / "models").exists():
            link_model_dirs(keep)
    old = os.environ.get("HNEURON_CACHE")
    os.environ["HNEURON_CACHE"] = str(stage_cache)
    try:
        yield stage_cache
    finally:
        if old is None:
            os.environ.pop("HNEURON_CACHE")
        else:
            os.environ["HNEURON_CACHE"] = old
        if keep is None:
            shutil.rmtree(stage_cache, ignore_errors=True)


def redraw_outcomes(params: dict, looked: pd.DataFrame, n_greedy: int, n_sampled: int, dtype: str,
                    *, stage_cache: Path | None = None) -> pd.DataFrame:
    """Notebook 01's greedy screen for the first ``n_greedy`` questions of the run's walk and its K samples
    for the first ``n_sampled`` of those, redrawn here on an empty stage cache; one row per question with the
    run's outcome beside the redrawn one."""
    from hneuron_utils import data, judges, models
    from hneuron_utils.data import labelling
    from hneuron_utils.text.generation import Sampling

    if not 0 < n_sampled <= n_greedy:
        raise ValueError(f"need 0 < sampled <= dataset questions, got {n_sampled} and {n_greedy}")
    if not looked.in_check.iloc[:n_sampled].all():
        raise ValueError(f"the run sampled only its first {int(looked.in_check.sum())} questions whatever their "
                         f"greedy answer (screen_check_size); ask for at most that many sampled questions")
    pool = data.load_dataset("triviaqa")
    if params["pool_size"] is not None:
        pool = data.sample(pool, params["pool_size"], params["seed"])
    pool, _ = labelling.apply_leak_policy(pool, params["leak_policy"])
    order = labelling.walk_order(pool, params["seed"])[:n_greedy]
    if [r.id for r in order] != looked.id.iloc[:n_greedy].tolist():
        raise ValueError("this checkout walks the pool in another order than the run did: its data or settings changed")
    rule = labelling.Rule(params["n_samples"], params["faithful_min_correct"], params["hallucinated_max_correct"])
    sampling = Sampling(do_sample=True, temperature=params["temperature"], top_k=params["top_k"],
                        top_p=params["top_p"], max_new_tokens=params["max_new_tokens"])
    judge = judges.RuleJudge()
    with isolated_stage_cache("hneuron-redraw-", keep=stage_cache):
        loaded = models.load_model(params["model"], dtype=dtype, device="cpu")
        greedy = labelling.greedy_answers(loaded, order, params["screen_max_new_tokens"], params["gen_batch_size"],
                                          progress=False)
        drawn = labelling.sampled_answers(loaded, order[:n_sampled], sampling, rule.n_samples, params["seed"],
                                          batch_size=params["gen_batch_size"])
    rows = []
    for i, r in enumerate(order):
        run_row = looked.iloc[i]
        row = {"id": r.id, "greedy_correct (run)": bool(run_row.greedy_correct),
               "greedy_correct (here)": judge.judge(r.question, greedy[r.id]["text"], r.answers).correct}
        if i < n_sampled:
            here = labelling.judge_samples(judge, rule, r, drawn[r.id])
            row.update({"n_correct (run)": int(run_row.n_correct), "n_correct (here)": here["n_correct"],
                        "label (run)": run_row.label, "label (here)": here["label"]})
        rows.append(row)
    return pd.DataFrame(rows)


def redraw_summary(table: pd.DataFrame) -> pd.DataFrame:
    """How many redrawn outcomes differ from the run's, each with its n and a Wilson 95% interval."""
    from hneuron_utils.stats import wilson_interval

    rows = []
    for what, col in (("greedy screen: correct/wrong flips", "greedy_correct"),
                      ("K samples: number correct differs", "n_correct"),
                      ("K samples: label differs", "label")):
        sub = table.dropna(subset=[f"{col} (run)"])
        k, n = int((sub[f"{col} (run)"] != sub[f"{col} (here)"]).sum()), len(sub)
        lo, hi = wilson_interval(k, n)
        rows.append({"outcome": what, "differ": k, "n": n, "share": k / n, "lo": lo, "hi": hi})
    lab = table.dropna(subset=["label (run)"])
    for cls in ("faithful", "hallucinated"):
        k_run = int((lab["label (run)"] == cls).sum())
        kept = int(((lab["label (run)"] == cls) & (lab["label (here)"] == cls)).sum())
        lo, hi = wilson_interval(k_run - kept, k_run) if k_run else (float("nan"), float("nan"))
        rows.append({"outcome": f"K samples: the run's {cls} questions not {cls} here", "differ": k_run - kept,
                     "n": k_run, "share": (k_run - kept) / k_run if k_run else float("nan"), "lo": lo, "hi": hi})
    return pd.DataFrame(rows)


def rerun_probe(run: str, *, profile: str, suffix: str, overrides: dict | None = None,
                stage_cache: Path | None = None) -> Path:
    """Notebooks 02–03 again on ``run``'s own 01 dataset, from an empty stage cache (a temporary one, or
    ``stage_cache``, kept), with ``overrides``; into ``results/<run>-<suffix>/``, which is returned."""
    from hneuron_utils.workbook import run as runner

    src, dst = run_dir(run), run_dir(f"{run}-{suffix}")
    for sub in ("data", "tables"):
        (dst / sub).mkdir(parents=True, exist_ok=True)
    for f in ("01_examples.jsonl", "01_looked.jsonl"):
        shutil.copy2(src / "data" / f, dst / "data" / f)
    with isolated_stage_cache(f"hneuron-{suffix}-", keep=stage_cache):
        runner.run(profile, only=["02", "03"], run_name=dst.name, overrides={"figures_dir": None, **(overrides or {})})
    return dst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hneuron_utils.workbook.repro", description=__doc__.split("\n")[0])
    ap.add_argument("--run", default="default", help="the run whose 01 dataset and 03 result are checked")
    ap.add_argument("--profile", default=None, help="profile of that run (default: params/<run>.yaml)")
    ap.add_argument("--batch-size", type=int, default=8, help="cett_batch_size of the re-run")
    ap.add_argument("--dataset", type=int, default=0, metavar="N",
                    help="instead: redraw 01's greedy screen of the run's first N questions on this machine")
    ap.add_argument("--sampled", type=int, default=100, help="with --dataset: redraw the K samples of this many")
    ap.add_argument("--dtype", default="bfloat16", help="with --dataset: the model's dtype here")
    ap.add_argument("--stage-cache", type=Path, default=None,
                    help="with --dataset: an empty (or this measurement's own) stage cache folder to keep, so an "
                         "interrupted redraw resumes; default: a temporary one, removed afterwards")
    args = ap.parse_args(argv)
    from hneuron_utils.workbook import config

    if args.dataset:
        import json

        src = run_dir(args.run)
        params = config.load_profile(args.profile or args.run)
        ran = json.loads((src / "run_log.json").read_text())["notebooks"]["01_build_dataset.ipynb"]
        table = redraw_outcomes(params, pd.read_json(src / "data" / "01_looked.jsonl", lines=True), args.dataset,
                                args.sampled, args.dtype, stage_cache=args.stage_cache)
        summary = redraw_summary(table).assign(dtype=args.dtype, **env.kernels(),
                                               **{"run's commit": ran.get("git_commit", "")})
        tag = "".join(ch for ch in f"{args.dtype}-{env.kernels()['cpu capability (torch)']}-"
                      f"{os.environ.get('ONEDNN_MAX_CPU_ISA', 'default')}" if ch.isalnum() or ch in "-_").lower()
        table.to_csv(src / "tables" / f"01_redraw_{tag}.csv", index=False)
        summary.to_csv(src / "tables" / f"01_redraw_{tag}_summary.csv", index=False)
        print(summary.round(3).to_string(index=False))
        return 0
    src = run_dir(args.run)
    dst = rerun_probe(args.run, profile=args.profile or args.run, suffix="repro",
                      overrides={"cett_batch_size": args.batch_size})
    row = compare_runs(src, dst) | {"cett_batch_size (re-run)": args.batch_size}
    pd.DataFrame([row]).to_csv(src / "tables" / "03_cross_run.csv", index=False)
    print(pd.Series(row).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
