"""Write a sheet of real notebook-08 TriviaQA answers (untuned, SFT, EAFT) for hand labelling.

    python scripts/finetune_label_sheet.py --profile default --per-cell 20 --seed 11 --out /tmp/sheet08.jsonl

Rebuilds notebook 08's two TriviaQA sets (answered right / wrong before) and its two tuned models from the
profile, loads each model and reads its greedy answers (from the stage cache when notebook 08 has run), and
draws ``--per-cell`` answers per model and set, seeded. Each line has the question, the gold aliases (at
most 12) and the response; the rule judge's verdict is deliberately not written, and a blind copy
(``*.blind.jsonl``) leaves out the model and the set too, so the labeller is not primed by them. Label
meanings are in ``data/labels/README.md``; labelled lines go to ``data/labels/08_triviaqa_outcome.jsonl``.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    from hneuron_utils import data, models
    from hneuron_utils.data import labelling, medmc
    from hneuron_utils.training import forgetting, sft
    from hneuron_utils.workbook import config
    from hneuron_utils.workbook.paths import run_dir

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--per-cell", type=int, default=20)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    p = config.load_profile(args.profile)
    cfg = type("Cfg", (), {k: p[k] for k in config.PARAM_NAMES})
    run = run_dir(p["run_name"]) / "data"
    pool, _ = labelling.apply_leak_policy(data.load_dataset("triviaqa"), p["leak_policy"])
    looked = pd.read_json(run / "01_looked.jsonl", lines=True)
    dataset_ids = set(pd.read_json(run / "01_examples.jsonl", lines=True).id)
    known, unknown = forgetting.qa_sets(looked, dataset_ids, pool, p["ft_qa_items"], p["seed"])
    train_items, _ = forgetting.mc_split(medmc.load_medmc(), p["ft_train_items"], p["ft_eval_items"], p["seed"])
    pairs = forgetting.mc_pairs(train_items)
    n_layers = models.load_model(p["model"], dtype=p["dtype"], device="cpu").n_layers
    names = {"untuned": p["model"]}
    for loss in ("sft", "eaft"):
        d = sft.tuned_dir(forgetting.tune_config(cfg, pairs, loss, n_layers))
        if not (d / "tune_record.json").exists():
            raise SystemExit(f"the {loss} tuning ({d}) has not finished: run notebook 08 first")
        names[loss.upper()] = str(d)
    rng = np.random.default_rng(args.seed)
    rows = []
    for name, path in names.items():
        loaded = models.load_model(path, dtype=p["dtype"], device="cpu")
        for set_name, recs in (("known", known), ("unknown", unknown)):
            got = forgetting.qa_outcomes(loaded, recs, p["screen_max_new_tokens"], p["gen_batch_size"])
            for k in sorted(rng.choice(len(recs), args.per_cell, replace=False)):
                r = recs[k]
                rows.append({"id": r.id, "model": name, "set": set_name, "question": r.question,
                             "answers": list(r.answers)[:12], "response": got.text[k]})
        del loaded
        gc.collect()
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


if __name__ == "__main__":
    raise SystemExit(main())
