"""Fine-tuning sheet: real TriviaQA answers of the untuned model and its SFT and EAFT tunes, for reference labels.

    python -m hneuron_utils.workbook.label_sheets finetune --run default --per-cell 20 --seed 11 \
        --out /tmp/sheet08.jsonl

Reads notebook 08's saved answers (``results/<run>/data/08_answers.jsonl``: every model's greedy answer to
its two TriviaQA sets, answered right / wrong before) and draws ``--per-cell`` answers per model and set,
seeded. Each line has the question, the gold aliases (at most 12) and the response; the rule judge's verdict
is deliberately not written, and a blind copy (``*.blind.jsonl``) leaves out the model and the set too, so
the labeller is not primed by them. Label meanings are in ``data/labels/README.md``; labelled lines go to
``data/labels/08_triviaqa_outcome.jsonl``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from hneuron_utils.paths import run_dir


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--run", default="default")
    ap.add_argument("--per-cell", type=int, default=20)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--out", type=Path, required=True)


def run(args: argparse.Namespace) -> int:
    path = run_dir(args.run) / "data" / "08_answers.jsonl"
    if not path.exists():
        raise SystemExit(f"{path} not found: run notebook 08 with run_name={args.run!r} first")
    answers = pd.read_json(path, lines=True)
    rng = np.random.default_rng(args.seed)
    rows = []
    for (_, _), cell in answers.groupby(["model", "set"], sort=False):  # the notebook's order: model, then set
        for k in sorted(rng.choice(len(cell), args.per_cell, replace=False)):
            r = cell.iloc[k]
            rows.append({"id": r.id, "model": r.model, "set": r.set, "question": r.question,
                         "answers": list(r.answers)[:12], "response": r.response})
    order = rng.permutation(len(rows))  # models and sets interleaved
    blind = args.out.with_suffix(".blind.jsonl")
    with open(args.out, "w", encoding="utf-8") as f, open(blind, "w", encoding="utf-8") as b:
        for n, k in enumerate(order):
            f.write(json.dumps({"row": n, **rows[k]}, ensure_ascii=False) + "\n")
            # what the labeller sees: no model, no set (the set says whether it was answered right before)
            b.write(json.dumps({"row": n, **{c: rows[k][c] for c in ("question", "answers", "response")}},
                               ensure_ascii=False) + "\n")
    print(f"{len(rows)} answers → {args.out} (and the labeller's blind copy {blind})")
    return 0
