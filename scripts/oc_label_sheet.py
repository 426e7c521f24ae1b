"""Write a sheet of real notebook-05 responses (FalseQA or jailbreak) for hand labelling.

    python scripts/oc_label_sheet.py --benchmark falseqa --n 60 --out /tmp/falseqa_sheet.jsonl

The responses are read from notebook 05's stage cache (``$HNEURON_CACHE/stages/steer``): every condition
(neuron set × α) of ``--model``, so the sample spans the α grid; ``--n`` responses are drawn (seeded) among
the distinct (item, text) pairs. Each line has ``complied: null`` and the item's question; the judge's verdict
is deliberately not written, so the labeller is not primed by it. Label meanings are in
``data/labels/README.md``. The labelled lines go to ``data/labels/falseqa_premise.jsonl`` or
``data/labels/jailbreak_refusal.jsonl``, which notebook 05 (section 7) compares the rule judges against.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hneuron_utils.data import overcompliance as oc  # noqa: E402
from hneuron_utils.workbook.stages import cache_root  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--benchmark", choices=["falseqa", "jailbreak"], required=True)
    ap.add_argument("--model", default="qwen2.5-coder-1.5b-instruct")
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    items = {it.id: it for it in (oc.load_falseqa() if args.benchmark == "falseqa" else oc.load_jailbreak())}
    seen, rows = set(), []
    for d in sorted((cache_root() / "stages" / "steer").glob("*")):
        p = json.loads((d / "params.json").read_text())
        if p["model"]["model"] != args.model or not (d / "items.jsonl").exists():
            continue
        for line in (d / "items.jsonl").read_text().splitlines():
            rec = json.loads(line)
            item_id = rec["id"].rsplit(":", 1)[0]
            if item_id not in items or (item_id, rec["value"]["text"]) in seen:
                continue
            seen.add((item_id, rec["value"]["text"]))
            rows.append({"id": item_id, "model": args.model, "alpha": p["alpha"], "neurons": p["neurons"],
                         "max_new_tokens": p["sampling"]["max_new_tokens"], "question": items[item_id].question,
                         "response": rec["value"]["text"], "complied": None, "note": ""})
    if len(rows) < args.n:
        print(f"only {len(rows)} distinct responses in the cache", file=sys.stderr)
    pick = random.Random(args.seed).sample(rows, min(args.n, len(rows)))
    with open(args.out, "w", encoding="utf-8") as f:
        for r in pick:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"wrote {len(pick)} of {len(rows)} distinct responses to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
