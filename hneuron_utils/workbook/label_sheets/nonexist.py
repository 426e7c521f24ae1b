"""NonExist abstention sheet: real model responses to questions about entities that do not exist, for reference labels.

    python -m hneuron_utils.workbook.label_sheets nonexist --model qwen2.5-coder-1.5b-instruct \
        --questions 40 --samples 2 --out /tmp/sheet.jsonl
    python -m hneuron_utils.workbook.label_sheets nonexist --system-prompt default --first 80 \
        --questions 110 --samples 1 --out /tmp/sheet_sys.jsonl   # under the default profile's nonexist_system_prompt

The responses are drawn exactly as notebook 04 draws them (the paper's prompt and sampling, seeded per
question and sample, the same stage cache), for ``--questions`` NonExist questions of
``nonexist.generate(--pool, --seed)`` from index ``--first`` on, under the paper's prompt or, with
``--system-prompt``, under a system turn (``default`` = the default profile's ``nonexist_system_prompt``);
each line records it in ``prompt`` and ``system``. Each line has ``faithful: null``; the labeller reads every
response and sets ``faithful`` to true (it abstains: says it does not know / cannot find or verify the entity /
that it does not exist, and gives no concrete answer) or false (any concrete answer), optionally with a
``note``. The labelled lines go to ``data/labels/nonexist_abstention.jsonl``, which notebook 04 and the
tests compare the abstention judge against. The judge's verdict is deliberately not written to the
sheet, so the labeller is not primed by it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hneuron_utils.data import nonexist


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--model", default="qwen2.5-coder-1.5b-instruct")
    ap.add_argument("--pool", type=int, default=600, help="nonexist_size of the generated pool")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--questions", type=int, default=40)
    ap.add_argument("--samples", type=int, default=2, help="responses per question (the first of its K samples)")
    ap.add_argument("--n-samples", type=int, default=10, help="K of the sampling stage (part of its cache key)")
    ap.add_argument("--max-new-tokens", type=int, default=50)
    ap.add_argument("--first", type=int, default=0, help="index of the first question in the generated pool")
    ap.add_argument("--system-prompt", default=None,
                    help="system turn ('default' = the default profile's nonexist_system_prompt); none = the paper's")
    ap.add_argument("--out", type=Path, required=True)


def run(args: argparse.Namespace) -> int:
    from hneuron_utils import models
    from hneuron_utils.data import labelling
    from hneuron_utils.text import generation

    system = args.system_prompt
    if system == "default":
        from hneuron_utils.workbook.config import load_profile

        system = load_profile("default")["nonexist_system_prompt"]
    recs = nonexist.generate(args.pool, args.seed)[args.first: args.first + args.questions]
    loaded = models.load_model(args.model)
    s = generation.Sampling(do_sample=True, temperature=1.0, top_k=50, top_p=0.9, max_new_tokens=args.max_new_tokens)
    out = labelling.sampled_answers(loaded, recs, s, args.n_samples, args.seed, batch_size=256, upto=args.samples,
                                    system=system)
    with open(args.out, "w", encoding="utf-8") as f:
        for r in recs:
            for k, x in enumerate(out[r.id]):
                f.write(json.dumps({"id": r.id, "sample": k, "model": args.model, "category": r.meta["category"],
                                    "question": r.question, "response": x["text"],
                                    "prompt": "abstention allowed" if system else "paper", "system": system,
                                    "faithful": None, "note": ""},
                                   ensure_ascii=False) + "\n")
    print(f"wrote {len(recs) * args.samples} responses to {args.out}")
    return 0
