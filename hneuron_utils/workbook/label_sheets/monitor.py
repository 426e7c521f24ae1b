"""Monitor sheet: real long-form answers, unguarded or under a resampling guard, for reference labels.

    python -m hneuron_utils.workbook.label_sheets monitor --stage streams --first 192 --n 130 --seed 7 \
        --out /tmp/sheet.jsonl
    python -m hneuron_utils.workbook.label_sheets monitor --stage guarded --min-resamples 1 --n 40 --seed 8 \
        --out /tmp/sheet_guarded.jsonl

The answers are read from notebook 07's stage cache (``$HNEURON_CACHE/stages/<stage>``): ``streams`` holds
the unguarded answers, ``guarded`` the answers of the resampling guards (every guard's folder). ``--first``
restricts the draw to the first answers of the stage (in chunk order); ``--n`` answers are drawn, seeded,
among those that are not abstentions (and, with ``--min-resamples``, that the guard resampled). Each line has
the question, the gold aliases (at most 12) and the response; the rule's verdict is deliberately not written,
so the labeller is not primed by it. Label meanings are in ``data/labels/README.md``; labelled lines go to
``data/labels/07_longform_outcome.jsonl``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from hneuron_utils import data
from hneuron_utils.cache import cache_root
from hneuron_utils.paths import run_dir


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--stage", choices=["streams", "guarded"], default="streams")
    ap.add_argument("--model", default="qwen2.5-coder-1.5b-instruct")
    ap.add_argument("--first", type=int, default=None)
    ap.add_argument("--n", type=int, default=130)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--min-resamples", type=int, default=0, help="only answers the guard resampled at least this often")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--run", default="default", help="the run whose 07_streams.jsonl names keyless answers")


def run(args: argparse.Namespace) -> int:
    import torch

    by_id = {r.id: r for r in data.load_dataset("triviaqa")}
    rows = []
    for d in sorted((cache_root() / "stages" / args.stage).glob("*/")):
        params = json.loads((d / "params.json").read_text())
        if params.get("model") != args.model:
            continue
        for f in sorted(d.glob("chunk*.pt")):
            for s in torch.load(f, weights_only=False):
                rows.append({"stream": s, "guard": params.get("guard"), "tau": params.get("tau")})
    if args.first is not None:
        rows = rows[:args.first]
    if any(not r["stream"].get("key") for r in rows):  # chunks written before streams carried their key
        table = run_dir(args.run) / "data" / "07_streams.jsonl"
        ids = [json.loads(line)["id"] for line in open(table, encoding="utf-8")]
        if args.stage != "streams" or len(ids) < len(rows):
            raise SystemExit(f"answers without their question id, and {table} cannot name them")
        for r, i in zip(rows, ids):
            r["stream"]["key"] = i
    rows = [r for r in rows if not r["stream"]["abstained"] and r["stream"]["resamples"] >= args.min_resamples]
    if len(rows) < args.n:
        raise SystemExit(f"only {len(rows)} answers in stage {args.stage}; asked for {args.n}")
    pick = sorted(np.random.default_rng(args.seed).choice(len(rows), args.n, replace=False))
    with open(args.out, "w", encoding="utf-8") as out:
        for i in pick:
            r = rows[i]
            rec = by_id[r["stream"]["key"]]
            out.write(json.dumps({"id": rec.id, "question": rec.question, "answers": list(rec.answers)[:12],
                                  "response": r["stream"]["text"], "condition": r["guard"] or "unguarded",
                                  "resamples": r["stream"]["resamples"]},
                                 ensure_ascii=False) + "\n")
    print(f"{args.n} answers written to {args.out}")
    return 0
