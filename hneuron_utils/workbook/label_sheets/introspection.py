"""Introspection sheet: real responses of concept-injection trials, for reference labels.

    python -m hneuron_utils.workbook.label_sheets introspection --run default --n 150 --seed 21 \
        --out /tmp/sheet09.jsonl

Reads notebook 09's saved trials (``results/<run>/data/09_trials.jsonl``: every trial's greedy response under
its condition) and draws ``--n`` distinct responses stratified over the strata condition × layer × strength
(the no-injection trials are one stratum per question type), as evenly as the strata allow, seeded. Each line
has the trial, its condition, layer, strength, the trial's concept word and the response; the rule judges'
verdicts are deliberately not written, and a blind copy (``*.blind.jsonl``) keeps only what the labeller needs:
the question type (detection or the neutral request), the concept word to look for, and the response — not
whether anything was injected, where or how strongly. Label meanings are in ``data/labels/README.md``; labelled
lines go to ``data/labels/09_trials.jsonl``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from hneuron_utils.introspection.trials import load_concepts
from hneuron_utils.paths import run_dir


def draw(trials: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """``n`` trials with distinct responses, spread evenly over the strata (round robin, seeded order)."""
    rng = np.random.default_rng(seed)
    t = trials.drop_duplicates("response")
    strata = [g.iloc[rng.permutation(len(g))] for _, g in
              t.groupby([t.condition, t.layer.fillna(-1), t.strength], sort=True)]
    picked, k = [], 0
    while len(picked) < min(n, len(t)):
        for g in strata:
            if k < len(g) and len(picked) < n:
                picked.append(g.iloc[k])
        k += 1
    return pd.DataFrame(picked).reset_index(drop=True)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--run", default="default")
    ap.add_argument("--n", type=int, default=150)
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--out", type=Path, required=True)


def run(args: argparse.Namespace) -> int:
    path = run_dir(args.run) / "data" / "09_trials.jsonl"
    if not path.exists():
        raise SystemExit(f"{path} not found: run notebook 09 with run_name={args.run!r} first")
    trials = pd.read_json(path, lines=True)
    concepts, _ = load_concepts()
    sheet = draw(trials, args.n, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    blind = args.out.with_suffix(".blind.jsonl")
    with open(args.out, "w", encoding="utf-8") as f, open(blind, "w", encoding="utf-8") as b:
        for row, k in enumerate(rng.permutation(len(sheet))):  # strata interleaved
            r = sheet.iloc[k]
            word = concepts[int(r.concept)].word if r.concept >= 0 else ""
            question = "neutral request" if str(r.condition).startswith("neutral") else "detection question"
            f.write(json.dumps({"row": row, "trial": r.trial, "condition": r.condition,
                                "layer": None if pd.isna(r.layer) else int(r.layer), "strength": float(r.strength),
                                "word": word, "question": question, "response": r.response}, ensure_ascii=False) + "\n")
            b.write(json.dumps({"row": row, "question": question, "word": word,
                                "response": r.response}, ensure_ascii=False) + "\n")
    print(f"{len(sheet)} responses → {args.out} (and the labeller's blind copy {blind})")
    print(sheet.condition.value_counts().to_string())
    return 0
