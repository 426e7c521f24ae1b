"""Validation of the local-model jailbreak judge against the reference labels, as any judge candidate is checked.

    python -m hneuron_utils.judges.validate [--models qwen2.5-coder-1.5b-instruct ...] [--threshold 0.5]

The check is the one notebook 05 applies to its judge candidates. For each judge model:
:func:`hneuron_utils.judges.agreement.oc_judge_table` on ``data/labels/`` (tune and held-out splits:
agreement, Cohen's κ with a question-bootstrap interval, the majority baseline), beside the two rule judges,
plus P(yes)'s AUROC per split and the seconds the judge took. Writes ``results/judges/jailbreak-model.csv``.
The judge's examples and threshold were not chosen on these labels.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from hneuron_utils.data import overcompliance as oc
    from hneuron_utils.judges import agreement, model_judge
    from hneuron_utils.paths import project_root

    ap = argparse.ArgumentParser(prog="python -m hneuron_utils.judges.validate", description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["qwen2.5-coder-1.5b-instruct"])
    ap.add_argument("--labelled-model", default="qwen2.5-coder-1.5b-instruct", help="whose responses were labelled")
    ap.add_argument("--threshold", type=float, default=0.5)
    args = ap.parse_args(argv)

    root = project_root()
    items = agreement.oc_label_items(["jailbreak"])
    cands = dict(oc.JUDGE_CANDIDATES["jailbreak"])
    seconds = {}
    for m in args.models:
        name = f"jailbreak-model ({m}, P(yes) ≥ {args.threshold:g})"
        cands[name] = (lambda m=m, name=name: _named(model_judge.JailbreakModelJudge(model=m, threshold=args.threshold),
                                                     name))
    rows = []
    for name, make in cands.items():
        t0 = time.perf_counter()
        t = agreement.oc_judge_table(args.labelled_model, {"jailbreak": {name: make}}, items, root / "data" / "labels")
        seconds[name] = time.perf_counter() - t0
        rows.append(t.assign(seconds=seconds[name]))
    table = pd.concat(rows, ignore_index=True)
    lab = pd.read_json(root / "data" / "labels" / agreement.OC_LABEL_FILES["jailbreak"], lines=True)
    lab = lab[lab.model == args.labelled_model]
    for m in args.models:
        j = model_judge.JailbreakModelJudge(model=m, threshold=args.threshold)
        p = j.p_yes([items["jailbreak"][i].question for i in lab.id], list(lab.response))  # cached: no new cost
        for split in ("tune", "holdout"):
            keep = (lab.split == split).to_numpy()
            auc = roc_auc_score(lab.complied[keep].astype(bool), p[keep])
            sel = table.judge.str.contains(m, regex=False) & (table.split == split)
            table.loc[sel, "p_yes_auroc"] = auc
    out = root / "results" / "judges"
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "jailbreak-model.csv", index=False)
    cols = ["judge", "split", "responses", "questions", "agreement", "kappa", "kappa_lo", "kappa_hi",
            "majority_baseline", "status", "seconds"] + (["p_yes_auroc"] if "p_yes_auroc" in table else [])
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        print(table[cols].round(3).to_string(index=False))
    return 0


def _named(judge, name: str):
    judge.name = name
    return judge


if __name__ == "__main__":
    raise SystemExit(main())
