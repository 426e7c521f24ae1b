"""Whether a re-run of the dataset labelling reproduces a committed run's faithful / hallucinated labels.

Notebook 01 labels the TriviaQA questions; this judges again the greedy answers and samples that a re-run of
it (even a partial, stopped one) left in the stage cache, and compares them with the committed
``01_looked.jsonl``. Exit status 0 when every verdict and label agrees.

    python -m hneuron_utils.workbook.rerun_check --run results/default --greedy STAGE_DIR --samples STAGE_DIR

STAGE_DIR: ``~/.cache/hneuron/stages/greedy/<key>`` and ``.../samples/<key>`` (their ``params.json`` names
the model and settings)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from hneuron_utils import data
from hneuron_utils.data.labelling import apply_leak_policy
from hneuron_utils.judges import RuleJudge


def _items(stage: Path) -> dict:
    out = {}
    for line in open(stage / "items.jsonl", encoding="utf-8"):
        try:
            x = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by an interruption
        out[x["id"]] = x["value"]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hneuron_utils.workbook.rerun_check",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--run", default="results/default")
    ap.add_argument("--greedy", type=Path, required=True)
    ap.add_argument("--samples", type=Path, required=True)
    a = ap.parse_args(argv)
    policy = json.loads((Path(a.run) / "run_log.json").read_text())["params"]["leak_policy"]
    recs = {r.id: r for r in apply_leak_policy(data.load_dataset("triviaqa"), policy)[0]}  # judged as 01 judged
    looked = pd.read_json(Path(a.run) / "data" / "01_looked.jsonl", lines=True).set_index("id")
    j, g, s = RuleJudge(), _items(a.greedy), _items(a.samples)
    both = [i for i in g if i in looked.index]
    same = sum(bool(j.judge(recs[i].question, g[i]["text"], recs[i].answers).correct) == bool(looked.loc[i, "greedy_correct"])
               for i in both)
    print(f"greedy: {len(both)} questions in both runs; the same verdict for {same}")
    sampled = [i for i in s if i in looked.index and looked.loc[i, "sampled"]]
    consistent = full = same_n = 0
    for i in sampled:
        c = [bool(j.judge(recs[i].question, x["text"], recs[i].answers).correct) for x in s[i]]
        lab = looked.loc[i, "label"]
        consistent += (lab == "faithful" and all(c)) or (lab == "hallucinated" and not any(c)) or \
            lab not in ("faithful", "hallucinated")
        if len(c) == len(s[i]) and len(c) == 10:
            full += 1
            same_n += sum(c) == looked.loc[i, "n_correct"]
    print(f"sampled: {len(sampled)} questions in both runs; the re-drawn samples agree with the committed label for "
          f"{consistent}; all 10 samples re-drawn for {full}, the same number correct for {same_n}")
    return 0 if same == len(both) and consistent == len(sampled) and same_n == full else 1


if __name__ == "__main__":
    sys.exit(main())
