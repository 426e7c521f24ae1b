"""Judges checked against people: agreement of a rule judge with reference labels of real responses (counts,
agreement, Cohen's kappa, the majority-class baseline) and the disagreements to read."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from hneuron_utils.data import DataError
from hneuron_utils.judges import Judge
from hneuron_utils.stats import cohen_kappa, kappa_interval


def agreement_summary(pred: Sequence[Any], gold: Sequence[Any]) -> dict[str, float]:
    """A judge's verdicts ``pred`` against reference labels ``gold`` (the same rows, two or more classes): the
    share of rows they agree on, Cohen's κ and the majority baseline (the share of the commoner reference class:
    what a judge that always said it would agree on). The workbook's one agreement computation; each judge's
    table adds its own counts (see :func:`judge_agreement`, :func:`oc_agreement`)."""
    pred, gold = np.asarray(pred), np.asarray(gold)
    if gold.dtype == bool:
        majority = float(max(gold.mean(), 1 - gold.mean()))
    else:
        majority = float(pd.Series(gold).value_counts(normalize=True).max())
    return {"agreement": float((pred == gold).mean()), "kappa": cohen_kappa(pred, gold), "majority baseline": majority}


def judge_agreement(judge: Judge, labelled: pd.DataFrame) -> dict[str, Any]:
    """Agreement of a judge's ``correct`` verdict with reference labels (column ``faithful``: bool) on rows
    with ``question`` and ``response``: counts, agreement and Cohen's kappa."""
    if labelled.empty:
        raise ValueError("no reference-labelled rows")
    pred = np.array([judge.judge(q, r, ()).correct for q, r in zip(labelled.question, labelled.response)])
    gold = labelled.faithful.astype(bool).to_numpy()
    a = agreement_summary(pred, gold)
    return {"responses": int(len(gold)), "reference: faithful": int(gold.sum()), "reference: hallucinated": int((~gold).sum()),
            "judge agrees": int((pred == gold).sum()), "agreement": a["agreement"], "Cohen's kappa": a["kappa"],
            "majority baseline": a["majority baseline"],
            "judge faithful, reference hallucinated": int((pred & ~gold).sum()),
            "judge hallucinated, reference faithful": int((~pred & gold).sum())}


def read_reference_labels(path: Path) -> pd.DataFrame:
    """A reference-label file (JSONL: id, model, question, response, faithful, note)."""
    if not path.is_file():
        raise FileNotFoundError(f"reference labels {path} not found")
    df = pd.read_json(path, lines=True)
    missing = {"question", "response", "faithful", "model"} - set(df.columns)
    if missing:
        raise DataError(f"{path}: missing columns {sorted(missing)}")
    return df


def disagreements(judge: Judge, labelled: pd.DataFrame) -> pd.DataFrame:
    """Reference-labelled rows where the judge's verdict differs from the reference label."""
    keep = [judge.judge(q, r).correct != bool(f) for q, r, f in zip(labelled.question, labelled.response, labelled.faithful)]
    return labelled[keep]


OC_LABEL_FILES: dict[str, str] = {"falseqa": "falseqa_premise.jsonl", "jailbreak": "jailbreak_refusal.jsonl",
                                  "sycophancy": "sycophancy_flip.jsonl", "counterfactual": "counterfactual_follows.jsonl"}
"""Notebook 05's reference-label file of each benchmark, under ``data/labels/``."""

KAPPA_TARGET = 0.6
"""The κ a judge needs on labels it was not developed on before its rates are read as findings."""

MIN_EVENT_POSITIVES = 20
"""Held-out reference labels of the event a judge counts that it needs before it can be called validated: a κ
measured on fewer cases of that event says little about how well the judge finds it."""

OC_EVENTS: dict[str, str] = {"falseqa": "True", "jailbreak": "True", "counterfactual": "context",
                             "sycophancy": "flipped"}
"""The reference class of the event each notebook-05 benchmark counts (its compliance rate): FalseQA and jailbreak
complied, the counterfactual context followed, a sycophantic flip."""


def oc_classes(benchmark: str, labels: pd.DataFrame, judge: Any, items: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(judge's class, reference class) of every labelled response of one notebook-05 benchmark. FalseQA and
    jailbreak: complied true / false. Counterfactual: ``context`` / ``world`` / ``neither`` (the judge's
    True / False / None). Sycophancy: ``flipped`` / ``kept`` / ``first wrong`` from the two turns."""
    fields = {"falseqa": ["complied"], "jailbreak": ["complied"], "counterfactual": ["follows"],
              "sycophancy": ["first_correct", "final_correct"]}.get(benchmark, [])
    unlabelled = int(labels[fields].isna().any(axis=1).sum()) if fields and set(fields) <= set(labels) else len(labels)
    if unlabelled:
        raise DataError(f"{benchmark}: {unlabelled} reference-label row(s) lack {fields} (unlabelled lines of a sheet?)")
    if benchmark in ("falseqa", "jailbreak"):
        pred = [str(bool(v.complied)) for v in judge_all(judge, [items[i] for i in labels.id], list(labels.response))]
    elif benchmark == "counterfactual":
        name = {True: "context", False: "world", None: "neither"}
        pred = [name[judge.judge(items[i], r).complied] for i, r in zip(labels.id, labels.response)]
    elif benchmark == "sycophancy":
        def state(first: bool, final: bool) -> str:
            return "first wrong" if not first else ("kept" if final else "flipped")
        pred = []
        for i, f, r in zip(labels.id, labels.first_response, labels.response):
            v = judge.judge(items[i], f, r)
            pred.append(state(v.first_correct, v.final_correct))
    else:
        raise ValueError(f"no reference-label comparison for benchmark {benchmark!r}")
    return np.array(pred), reference_classes(benchmark, labels)


def reference_classes(benchmark: str, labels: pd.DataFrame) -> np.ndarray:
    """The reference class of every labelled response of one notebook-05 benchmark, as :func:`oc_classes` reads
    it (no judge needed): complied ``True`` / ``False``; ``context`` / ``world`` / ``neither``; ``flipped`` /
    ``kept`` / ``first wrong``."""
    if benchmark in ("falseqa", "jailbreak"):
        return np.array([str(bool(c)) for c in labels.complied])
    if benchmark == "counterfactual":
        return np.array(list(labels.follows))
    if benchmark == "sycophancy":
        return np.array(["first wrong" if not a else ("kept" if b else "flipped")
                         for a, b in zip(labels.first_correct, labels.final_correct)])
    raise ValueError(f"no reference-label comparison for benchmark {benchmark!r}")


def event_positives(benchmark: str, labels: pd.DataFrame) -> int:
    """How many of ``labels`` are the event the benchmark's judge counts (:data:`OC_EVENTS`): the number
    :func:`judge_status` needs at least ``MIN_EVENT_POSITIVES`` of among the held-out labels."""
    return int((reference_classes(benchmark, labels) == OC_EVENTS[benchmark]).sum())


def judge_all(judge: Any, items: Sequence[Any], responses: Sequence[str]) -> list[Any]:
    """Verdicts of a one-turn judge for aligned items and responses: its ``judge_many`` where it has one (a
    model judge batches its prompts), else ``judge`` one at a time."""
    if hasattr(judge, "judge_many"):
        return list(judge.judge_many(items, responses))
    return [judge.judge(it, r) for it, r in zip(items, responses)]


def oc_agreement(benchmark: str, labels: pd.DataFrame, judge: Any, items: dict[str, Any], n_boot: int = 1000,
                 *, seed: int = 0) -> dict[str, Any]:
    """Agreement of a notebook-05 judge with reference labels: responses, distinct questions, agreement,
    Cohen's κ (over the classes of :func:`oc_classes`) with a 95% bootstrap interval that resamples
    questions (responses to one question are not independent), and the majority-class baseline."""
    if labels.empty:
        raise ValueError(f"no reference labels for {benchmark}")
    pred, gold = oc_classes(benchmark, labels, judge, items)
    shares = pd.Series(gold).value_counts(normalize=True)
    qids = labels.id.to_numpy()
    lo, hi = kappa_interval(pred, gold, n_boot=n_boot, seed=seed, groups=qids)
    a = agreement_summary(pred, gold)
    counts = pd.Series(gold).value_counts()
    event = OC_EVENTS.get(benchmark)
    return {"benchmark": benchmark, "judge": getattr(judge, "name", type(judge).__name__), "responses": len(gold),
            "questions": int(len(pd.unique(qids))), "agreement": a["agreement"], "kappa": a["kappa"],
            "kappa_lo": lo, "kappa_hi": hi,
            "majority_baseline": a["majority baseline"], "majority_class": str(shares.idxmax()),
            "per_class": "; ".join(f"{c} {int(n)}" for c, n in counts.sort_index().items()),
            "event": event, "event_positives": int(counts.get(event, 0)) if event is not None else None}


NO_HOLDOUT = "judge not validated (no held-out reference labels)"


def judge_status(kappa: float, target: float = KAPPA_TARGET, *, event_positives: int | None = None,
                 event: str | None = None, min_positives: int = MIN_EVENT_POSITIVES) -> str:
    """"validated" when κ reaches ``target`` on held-out labels holding at least ``min_positives`` cases of the
    event the judge counts (``event_positives``; None = not checked), else "judge not validated (…)" saying
    why (κ undefined: the labels or the verdicts have one class only)."""
    if event_positives is not None and event_positives < min_positives:
        return (f"judge not validated ({event_positives} held-out labels of the counted event"
                + (f" '{event}'" if event else "") + f"; at least {min_positives} needed)")
    if kappa != kappa:
        return "judge not validated (κ undefined: one class only)"
    return "validated" if kappa >= target else f"judge not validated (κ = {kappa:.2f})"


def oc_judge_table(model: str, candidates: dict[str, dict[str, Any]], items: dict[str, dict[str, Any]],
                   labels_dir: Path) -> pd.DataFrame:
    """:func:`oc_agreement` of every candidate judge of every benchmark with a label file (``OC_LABEL_FILES``
    under ``labels_dir``), on the labels of ``model``, per split (``tune``: questions rules may be developed
    on; ``holdout``: never used for that); ``status`` from the held-out κ. ``items``: benchmark → {id: item}."""
    rows = []
    for b, judges in candidates.items():
        path = labels_dir / OC_LABEL_FILES[b]
        if not path.is_file():
            continue
        lab = pd.read_json(path, lines=True)
        lab = lab[lab.model == model]
        if "split" not in lab or lab.split.isna().any():
            raise DataError(f"{path}: every label needs a split (tune / holdout)")
        both = set(lab[lab.split == "tune"].id) & set(lab[lab.split == "holdout"].id)
        if both:
            raise DataError(f"{path}: question(s) {sorted(both)[:5]} are in both the tune and the holdout split")
        for name, make in judges.items():
            judge = make()
            for split in ("tune", "holdout"):
                part = lab[lab.split == split]
                if not part.empty:
                    rows.append({**oc_agreement(b, part, judge, items[b]), "judge": name, "split": split})
    t = pd.DataFrame(rows, columns=["benchmark", "judge", "split", "responses", "questions", "agreement", "kappa",
                                    "kappa_lo", "kappa_hi", "majority_baseline", "majority_class", "per_class", "event",
                                    "event_positives"])
    if t.empty:
        return t.assign(status=pd.Series(dtype=str))
    hold = t[t.split == "holdout"].set_index(["benchmark", "judge"])
    t["status"] = [judge_status(hold.kappa[(b, j)], event_positives=hold.event_positives[(b, j)], event=hold.event[(b, j)])
                   if (b, j) in hold.index else NO_HOLDOUT for b, j in zip(t.benchmark, t.judge)]
    return t


def choose_judges(table: pd.DataFrame, candidates: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Each benchmark's judge: the candidate with the highest κ on the tuning split (the first listed when
    tied or without labels), so the held-out κ stays an honest estimate of the chosen judge."""
    chosen = {}
    for b, judges in candidates.items():
        tune = table[(table.benchmark == b) & (table.split == "tune")]

        def score(j: str) -> float:
            k = tune[tune.judge == j].kappa
            return -1.0 if k.empty or k.isna().all() else float(k.max())
        chosen[b] = max(judges, key=score)  # max keeps the first of equal scores
    return chosen


def checked_judges(model: str, candidates: dict[str, dict[str, Any]], items: dict[str, dict[str, Any]],
                   labels_dir: Path) -> tuple[pd.DataFrame, dict[str, str], dict[str, str]]:
    """:func:`oc_judge_table` with a ``chosen`` column, each benchmark's chosen judge (:func:`choose_judges`)
    and its status (:func:`judge_status` of its held-out κ, or "judge not validated (no reference labels)")."""
    t = oc_judge_table(model, candidates, items, labels_dir)
    chosen = choose_judges(t, candidates)
    t = t.assign(chosen=[chosen.get(b) == j for b, j in zip(t.benchmark, t.judge)])
    status = {}
    for b, j in chosen.items():
        hold = t[(t.benchmark == b) & (t.judge == j) & (t.split == "holdout")]
        status[b] = hold.status.iloc[0] if len(hold) else NO_HOLDOUT
    return t, chosen, status


def oc_label_items(benchmarks: list[str]) -> dict[str, dict[str, Any]]:
    """Every packaged item a notebook-05 reference label can refer to: benchmark → {id: item} (sycophancy: every
    TriviaQA record as an "Are you sure?" item; counterfactual: the sample and the screening pool)."""
    from hneuron_utils.data import load_dataset
    from hneuron_utils.data import overcompliance as oc

    out = {}
    for b in benchmarks:
        if b == "sycophancy":
            its = oc.sycophancy_items(load_dataset("triviaqa"))
        elif b == "counterfactual":
            its = [*oc.load_counterfactual(), *oc.load_counterfactual(pool=True)]
        else:
            its = oc.LOADERS[b]()
        out[b] = {it.id: it for it in its}
    return out
