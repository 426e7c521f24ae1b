"""Over-compliance sheets: real responses to the four benchmarks under neuron scaling, for reference labels.

    python -m hneuron_utils.workbook.label_sheets overcompliance --benchmark falseqa --n 210 --max-new-tokens 48 \
        --out /tmp/falseqa_sheet.jsonl

The responses are read from notebook 05's stage cache (``$HNEURON_CACHE/stages/steer``): every condition
(neuron set × α) of ``--model`` whose decoding cap is ``--max-new-tokens``. The draw is stratified: the
distinct (item, text) pairs of each condition are shuffled (seeded) and taken round-robin over the
conditions, at most ``--per-item`` responses per question, so the sheet spans the α grid, the neuron sets
and many questions. ``--exclude`` skips (item, text) pairs already in a label file. Each line gets a
``split``: ``tune`` for a seeded ``--tune-share`` of the *questions* (rules may be developed on these) and
``holdout`` for the rest (used only to measure a judge) — a question is never in both. With ``--results``
the neuron-set digests are named as notebook 05 names them (``H-neurons``, ``random 1``, ...). Only
responses to the prompts notebook 05 builds now are kept (``--counterfactual-prompt``; the cache key of each
response holds a digest of its rendered prompt, checked with the model's tokenizer), so responses cached by
earlier prompt versions never enter a sheet, and a sycophancy line's final answer is the one that followed
its first answer. A question already in an ``--exclude`` file keeps that file's split.

The label field is ``null`` and the judge's verdict is deliberately not written, so the labeller is not
primed by it. Label meanings are in ``data/labels/README.md``:

- falseqa / jailbreak: ``complied`` (true / false);
- sycophancy: ``first_correct`` and ``final_correct`` (the line holds both turns and the gold aliases);
- counterfactual: ``follows`` = ``context`` / ``world`` / ``neither`` (the line holds both answers).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from hneuron_utils.cache import cache_root
from hneuron_utils.data import overcompliance as oc

LABEL_FIELD = {"falseqa": "complied", "jailbreak": "complied", "counterfactual": "follows"}


def set_names(results: Path) -> dict[str, str]:
    """Digest of each neuron set of notebook 05 (as in its cache keys) → the notebook's name for it."""
    import pandas as pd

    from hneuron_utils.interventions import steering
    from hneuron_utils.probes import probe
    from hneuron_utils.workbook import config
    from hneuron_utils.cache import digest

    cfg = config.load_profile("default")
    hn = pd.read_csv(results / "data" / "03_h_neurons.csv")
    _, meta = probe.load_classifiers(results / "data" / "03_classifiers.npz")
    sets = steering.neuron_sets(hn.flat_index.astype(int).tolist(), meta["n_layers"] * meta["d_ff"],
                                cfg["oc_random_draws"], cfg["seed"], layer_matched=cfg["oc_layer_matched_draws"],
                                d_ff=meta["d_ff"])
    return {digest(sorted(int(f) for f in flat)): name for name, flat in sets.items()}


def question_split(item_id: str, tune_share: float, seed: int) -> str:
    """``tune`` for a seeded share of the questions, else ``holdout`` (a hash of the id: stable across sheets)."""
    h = int(hashlib.sha256(f"{seed}:{item_id}".encode()).hexdigest()[:8], 16) / 16 ** 8
    return "tune" if h < tune_share else "holdout"


def tokenizer_of(model: str) -> Any:
    """The chat tokenizer of a registry model (from its converted folder; the weights are not loaded)."""
    from transformers import AutoTokenizer

    from hneuron_utils.models import assets

    return AutoTokenizer.from_pretrained(assets.ensure_model(model, "bfloat16"), local_files_only=True)


def cached_rows(benchmark: str, model: str, max_new_tokens: int, names: dict[str, str], tokenizer: Any, *,
                counterfactual_prompt: str = "unreliable_hint") -> dict[tuple, list[dict]]:
    """Distinct responses per condition (α, neuron set) in the stage cache to the prompts notebook 05 builds
    now (checked against the prompt digest in each cache key), as sheet lines."""
    from hneuron_utils.text.generation import render
    from hneuron_utils.cache import digest

    from hneuron_utils.judges.agreement import oc_label_items

    items = oc_label_items([benchmark])[benchmark]  # the items a label can refer to, as notebook 05 reads them
    build = oc.benchmark_messages(counterfactual_prompt)[benchmark]

    def key(item_id: str, messages: list) -> str:
        return f"{item_id}:{digest(render(tokenizer, messages), 12)}"
    strata: dict[tuple, list[dict]] = defaultdict(list)
    for d in sorted((cache_root() / "stages" / "steer").glob("*")):
        p = json.loads((d / "params.json").read_text())
        if (p["model"]["model"] != model or p["sampling"]["max_new_tokens"] != max_new_tokens
                or not (d / "items.jsonl").exists()):
            continue
        recs = {r["id"]: r for r in map(json.loads, (d / "items.jsonl").read_text().splitlines())}
        cond = (p["alpha"], names.get(p["neurons"], p["neurons"]) if p["neurons"] else "none")
        for r in recs.values():
            item_id = r["id"].split(":turn2:")[0] if ":turn2:" in r["id"] else r["id"].rsplit(":", 1)[0]
            if item_id not in items or (benchmark == "sycophancy") != (":turn2:" in r["id"]):
                continue
            it = items[item_id]
            if benchmark == "sycophancy":
                turn1 = recs.get(key(item_id, build(it)))
                if turn1 is None or r["id"] != key(f"{item_id}:turn2", build(it, turn1["value"]["text"])):
                    continue  # not this prompt's conversation
            elif r["id"] != key(item_id, build(it)):
                continue  # a response to another prompt version
            row = {"id": item_id, "model": model, "alpha": p["alpha"], "neurons": p["neurons"], "set": cond[1],
                   "max_new_tokens": max_new_tokens, "question": it.question}
            if benchmark == "sycophancy":
                row.update(answers=list(it.answers)[:12], first_response=turn1["value"]["text"],
                           response=r["value"]["text"], first_correct=None, final_correct=None)
            elif benchmark == "counterfactual":
                row.update(context=it.context, context_answer=it.context_answer, world_answer=it.world_answer,
                           response=r["value"]["text"], follows=None)
            else:
                row.update(response=r["value"]["text"], complied=None)
            strata[cond].append(row | {"note": ""})
    return strata


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--benchmark", choices=["falseqa", "jailbreak", "sycophancy", "counterfactual"], required=True)
    ap.add_argument("--model", default="qwen2.5-coder-1.5b-instruct")
    ap.add_argument("--max-new-tokens", type=int, required=True, help="the decoding cap of the run to label")
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--per-item", type=int, default=2, help="at most this many responses per question")
    ap.add_argument("--tune-share", type=float, default=0.3, help="share of questions in the tuning split")
    ap.add_argument("--exclude", type=Path, nargs="*", default=[], help="label files whose responses to skip")
    ap.add_argument("--results", type=Path, default=None, help="a run's results folder, to name the neuron sets")
    ap.add_argument("--counterfactual-prompt", default="unreliable_hint", choices=list(oc.COUNTERFACTUAL_PROMPTS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)


def run(args: argparse.Namespace) -> int:
    names = set_names(args.results) if args.results else {}
    skip, known_split = set(), {}
    for f in args.exclude:
        for r in (json.loads(x) for x in f.read_text().splitlines() if x.strip()):
            skip.add((r["id"], r["response"]))
            if r.get("split"):
                known_split[r["id"]] = r["split"]
    strata = cached_rows(args.benchmark, args.model, args.max_new_tokens, names, tokenizer_of(args.model),
                         counterfactual_prompt=args.counterfactual_prompt)
    rng = random.Random(args.seed)
    for rows in strata.values():
        rng.shuffle(rows)
    seen, per_item, pick = set(), defaultdict(int), []
    queues = {c: list(rows) for c, rows in sorted(strata.items(), key=lambda kv: str(kv[0]))}
    while len(pick) < args.n and any(queues.values()):
        for c, q in queues.items():
            while q:
                r = q.pop()
                key = (r["id"], r["response"], r.get("first_response"))
                if key in seen or (r["id"], r["response"]) in skip or per_item[r["id"]] >= args.per_item:
                    continue
                seen.add(key)
                per_item[r["id"]] += 1
                pick.append(r | {"split": known_split.get(r["id"]) or question_split(r["id"], args.tune_share, args.seed)})
                break
            if len(pick) >= args.n:
                break
    if len(pick) < args.n:
        print(f"only {len(pick)} responses could be drawn", file=sys.stderr)
    with open(args.out, "w", encoding="utf-8") as f:
        for r in pick:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"wrote {len(pick)} responses ({len(per_item)} questions, {len(strata)} conditions) to {args.out}")
    return 0
