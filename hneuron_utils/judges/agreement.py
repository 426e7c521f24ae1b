"""Judges checked against people: agreement of a rule judge with hand labels of real responses (counts,
agreement, Cohen's kappa, the majority-class baseline) and the disagreements to read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hneuron_utils.data import DataError
from hneuron_utils.judges import Judge
from hneuron_utils.stats import cohen_kappa


def judge_agreement(judge: Judge, labelled: pd.DataFrame) -> dict[str, Any]:
    """Agreement of a judge's ``correct`` verdict with hand labels (column ``faithful``: bool) on rows
    with ``question`` and ``response``: counts, agreement and Cohen's kappa."""
    if labelled.empty:
        raise ValueError("no hand-labelled rows")
    pred = np.array([judge.judge(q, r, ()).correct for q, r in zip(labelled.question, labelled.response)])
    gold = labelled.faithful.astype(bool).to_numpy()
    agree = float((pred == gold).mean())
    kappa = cohen_kappa(pred, gold)
    majority = float(max(gold.mean(), 1 - gold.mean()))
    return {"responses": int(len(gold)), "hand: faithful": int(gold.sum()), "hand: hallucinated": int((~gold).sum()),
            "judge agrees": int((pred == gold).sum()), "agreement": agree, "Cohen's kappa": kappa, "majority baseline": majority,
            "judge faithful, hand hallucinated": int((pred & ~gold).sum()),
            "judge hallucinated, hand faithful": int((~pred & gold).sum())}


def read_hand_labels(path: Path) -> pd.DataFrame:
    """A hand-label file (JSONL: id, model, question, response, faithful, note)."""
    if not path.is_file():
        raise FileNotFoundError(f"hand labels {path} not found")
    df = pd.read_json(path, lines=True)
    missing = {"question", "response", "faithful", "model"} - set(df.columns)
    if missing:
        raise DataError(f"{path}: missing columns {sorted(missing)}")
    return df


def disagreements(judge: Judge, labelled: pd.DataFrame) -> pd.DataFrame:
    """Hand-labelled rows where the judge's verdict differs from the hand label."""
    keep = [judge.judge(q, r).correct != bool(f) for q, r, f in zip(labelled.question, labelled.response, labelled.faithful)]
    return labelled[keep]


def hand_label_agreement(benchmark: str, labels: Any, judge: Any) -> dict[str, Any]:
    """Agreement of a rule judge's ``complied`` with hand labels (rows: id, response, complied) of one
    benchmark's packaged items, with Cohen's kappa and the majority-class baseline."""
    from hneuron_utils.data.overcompliance import LOADERS

    by_id = {it.id: it for it in LOADERS[benchmark]()}
    pred = np.array([bool(judge.judge(by_id[i], r).complied) for i, r in zip(labels.id, labels.response)])
    gold = labels.complied.astype(bool).to_numpy()
    return {"benchmark": benchmark, "responses": len(gold), "hand: complied": int(gold.sum()),
            "agreement": float((pred == gold).mean()), "Cohen's kappa": cohen_kappa(pred, gold),
            "majority baseline": float(max(gold.mean(), 1 - gold.mean()))}
