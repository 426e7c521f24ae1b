"""Evaluating a streaming monitor: the outcome judge against reference labels, the precision check,
the Final AUC, the early-detection curve, the abstaining and resampling guards, and the dashboard trace.
Every sentence a reader sees is computed here from a table's intervals."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from hneuron_utils.monitor import auroc_by_position, risk_coverage
from hneuron_utils.monitor.longform import OUTCOMES, outcome
from hneuron_utils.monitor.probes import (StreamProbe, alarm_scores, paired_risk_difference,
                                          risk_at_coverage, running_nll, token_features, tokens_until_alarm)
from hneuron_utils.judges.agreement import agreement_summary
from hneuron_utils.stats import bootstrap_ci, paired_difference, rate_with_ci


# --------------------------------------------------------------------------- the streams and the judge


def outcome_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Per split: the outcome counts, mean tokens and sentences, and the share cut by the token cap."""
    rows = []
    for split, g in list(table.groupby("split", sort=False)) + [("all", table)]:
        r = {"split": split, "questions": len(g)}
        r.update({o: int((g.outcome == o).sum()) for o in OUTCOMES})
        r.update({"mean tokens": g.tokens.mean(), "mean sentences": g.steps.mean(), "share cut": g.cut.mean()})
        rows.append(r)
    return pd.DataFrame(rows)


def read_outcome_labels(path: Path) -> pd.DataFrame:
    """Reference labels of long-form answers (JSONL: id, question, answers, response, label ∈ OUTCOMES)."""
    if not path.is_file():
        raise FileNotFoundError(f"reference labels {path} not found (see data/labels/README.md)")
    df = pd.read_json(path, lines=True)
    missing = {"id", "question", "answers", "response", "label"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}")
    bad = set(df.label) - set(OUTCOMES)
    if bad:
        raise ValueError(f"{path}: labels must be one of {OUTCOMES}, found {sorted(bad)}")
    df["rule"] = [outcome(q, r, a) for q, r, a in zip(df.question, df.response, df.answers)]
    return df


def outcome_agreement(labels: pd.DataFrame) -> pd.DataFrame:
    """The rule against the reference labels, on hallucinated (wrong) versus not — counts, agreement, Cohen's κ,
    majority baseline — and the three-way agreement: over all labels, then per condition the answers were
    drawn from (unguarded answers; sentences resampled by a guard), when the labels say."""
    groups = [("all", labels)]
    if "condition" in labels:
        kind = np.where(labels.condition.astype(str).str.startswith("resampling"), "resampled by a guard", "unguarded")
        groups += [(k, labels[kind == k]) for k in ("unguarded", "resampled by a guard") if (kind == k).any()]
    rows = []
    for name, g in groups:
        gold, pred = (g.label == "wrong").to_numpy(), (g.rule == "wrong").to_numpy()
        a = agreement_summary(pred, gold)
        rows.append({"answers": name, "responses": len(g), **{f"reference: {o}": int((g.label == o).sum()) for o in OUTCOMES},
                     "agreement (wrong vs not)": a["agreement"], "Cohen's kappa": a["kappa"],
                     "majority baseline": a["majority baseline"],
                     "rule wrong, reference not": int((pred & ~gold).sum()), "rule not, reference wrong": int((~pred & gold).sum()),
                     "three-way agreement": float((g.label == g.rule).mean())})
    return pd.DataFrame(rows)


def outcome_disagreements(labels: pd.DataFrame) -> pd.DataFrame:
    """Reference-labelled answers where the rule's outcome differs from the reference label."""
    return labels[labels.label != labels.rule]


# --------------------------------------------------------------------------- precision and overhead


def precision_check(loaded: Any, model: str, cett_dtype: str, device: str, prompts: Sequence[str],
                    *, streams: Sequence[Any], clf: Any, h_token: Sequence[np.ndarray], mask: np.ndarray,
                    n: int) -> pd.Series:
    """Re-read the H-neuron CETT of ``n`` streams (the first in ``mask``) teacher-forced in ``cett_dtype``
    (notebook 02's precision) and compare notebook 03's final score with the live (model-precision) one."""
    import gc

    from hneuron_utils import models
    from hneuron_utils.monitor import stream_scores, token_cett
    from hneuron_utils.monitor.live import teacher_forced

    idx = [i for i in np.flatnonzero(mask) if len(streams[i].token_ids)][:n]
    ref_model = models.for_cett(loaded, model, cett_dtype, device)
    ex = [teacher_forced(loaded.tokenizer, prompts[i], streams[i]) for i in idx]
    ref = token_cett(ref_model, ex, clf.columns, batch_size=8)
    ref_final = np.array([s[-1] for s in stream_scores(clf, ref)])
    live_final = np.array([h_token[i][-1] for i in idx])
    rel = [float(np.linalg.norm(streams[i].hcett[:, :len(clf.columns)] - r.numpy()) / max(np.linalg.norm(r.numpy()), 1e-12))
           for i, r in zip(idx, ref)]
    out = pd.Series({"answers": len(idx), "monitor dtype": str(loaded.hf.dtype).replace("torch.", ""),
                     "reference dtype": str(ref_model.hf.dtype).replace("torch.", ""),
                     "median relative CETT error": float(np.median(rel)),
                     "max |score difference|": float(np.abs(ref_final - live_final).max()),
                     "mean |score difference|": float(np.abs(ref_final - live_final).mean()),
                     "score correlation": float(np.corrcoef(ref_final, live_final)[0, 1]) if len(idx) > 2 else np.nan},
                    name="precision")
    if ref_model is not loaded:
        del ref_model
        gc.collect()
    return out


# --------------------------------------------------------------------------- detection


def oriented(train: np.ndarray, y_train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """A raw score (length, NLL) turned the way that separates the training streams (AUROC ≥ 0.5 there)."""
    from sklearn.metrics import roc_auc_score

    return test if roc_auc_score(y_train, train) >= 0.5 else -test


def final_auc(y: np.ndarray, scores: Mapping[str, np.ndarray], reference: str, lengths: np.ndarray, n_boot: int,
              *, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """AUROC (and length-matched AUROC) of each final score with bootstrap intervals, and ``reference``
    minus each other score with paired intervals (:func:`hneuron_utils.probes.baselines.compare`)."""
    from hneuron_utils.probes.baselines import compare

    if len(set(np.asarray(y).tolist())) < 2:
        raise ValueError("the held-out streams hold one outcome only: no AUROC (raise monitor_questions)")
    m, d = compare(np.asarray(y), dict(scores), reference, n_boot, seed, strata=np.asarray(lengths))
    m = m.drop(columns=[c for c in m.columns if c.startswith("accuracy")])
    d = d.drop(columns=[c for c in d.columns if c.startswith("accuracy")])
    return m, d


def step_pooled_auc(step_scores: Mapping[str, Sequence[np.ndarray]], y: np.ndarray, te: np.ndarray, n_boot: int,
                    seed: int) -> pd.DataFrame:
    """The streaming paper's step-pooled AUC: every step of every held-out stream is one example, labelled
    with its stream's outcome (the cumulative label here); the 95% interval resamples whole streams."""
    from sklearn.metrics import roc_auc_score

    yt = np.asarray(y)[te]
    rng = np.random.default_rng(seed)
    boots = [rng.integers(0, len(te), len(te)) for _ in range(n_boot)]
    rows = []
    for name, per in step_scores.items():
        sc = [np.asarray(per[i]) for i in te]

        def auc(idx: np.ndarray) -> float:
            lab = np.concatenate([np.full(len(sc[j]), yt[j]) for j in idx])
            return float(roc_auc_score(lab, np.concatenate([sc[j] for j in idx]))) if 0 < lab.mean() < 1 else np.nan

        vals = np.array([auc(b) for b in boots])
        lo, hi = np.nanquantile(vals, [0.025, 0.975])
        rows.append({"method": name, "step-pooled auroc": auc(np.arange(len(te))), "lo": lo, "hi": hi,
                     "steps": int(sum(len(x) for x in sc)), "streams": len(te)})
    return pd.DataFrame(rows)


def early_table(streams: Sequence[Any], te: np.ndarray, y: np.ndarray, fitted: Mapping[str, StreamProbe],
                h_token: Sequence[np.ndarray], *, spans: Sequence[Sequence[tuple[int, int]]], k_h: int,
                positions: Sequence[int], n_boot: int, seed: int, tr: np.ndarray | None = None) -> pd.DataFrame:
    """AUROC with 95% intervals after t tokens for the prefix probes, notebook 03's running score and the
    running NLL (held-out streams)."""
    yt = np.asarray(y)[te]
    curves = {f"{src} · prefix probe": [p.at_tokens(token_features(streams[i], src, k_h), spans[i], positions)
                                        for i in te] for src, p in fitted.items()}
    rows = []
    for name, per in curves.items():
        for j, t in enumerate(positions):
            pt, lo, hi = bootstrap_ci(yt, np.array([c[j] for c in per]), "auroc", n_boot, seed)
            rows.append({"method": name, "tokens": t, "auroc": pt, "auroc_lo": lo, "auroc_hi": hi, "n": len(yt)})
    for name, per in (("03 classifier · running", [h_token[i] for i in te]),
                      ("log-probability · running NLL", [running_nll(streams[i].logprob) for i in te])):
        rows += auroc_by_position(per, yt, positions, n_boot, seed).assign(method=name).to_dict("records")
    return pd.DataFrame(rows)[["method", "tokens", "auroc", "auroc_lo", "auroc_hi", "n"]]


# --------------------------------------------------------------------------- guards


def abstain_guards(step_scores: Mapping[str, Sequence[np.ndarray]], y: np.ndarray, te: np.ndarray,
                   spans: Sequence[Sequence[tuple[int, int]]], taus: Mapping[str, float], *, reference: str,
                   coverage: float, n_boot: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Risk–coverage curves of abstaining guards on held-out streams (each streaming score, plus the
    reference probe checked once after the full answer), and per guard: the risk at ``coverage`` with its
    interval, the paired difference to the reference, and coverage, risk and tokens written per question
    at the τ set on training streams."""
    yt = np.asarray(y)[te].astype(float)
    sp = [spans[i] for i in te]
    per = {m: [v[i] for i in te] for m, v in step_scores.items()}
    alarm = {m: alarm_scores(v) for m, v in per.items()}
    post = f"{reference}, post hoc"
    alarm[post] = np.array([v[-1] for v in per[reference]])
    curves, rows = [], []
    for m, s in alarm.items():
        curves.append(risk_coverage(s, yt).assign(method=m))
        tau = taus[reference if m == post else m]
        r = risk_at_coverage(s, yt, coverage, n_boot, seed)
        d = paired_risk_difference(alarm[reference], s, yt, coverage, n_boot, seed=seed) if m != reference else None
        answered = s < tau
        toks = (tokens_until_alarm(per[m], sp, tau) if m != post else np.array([x[-1][1] for x in sp]))
        rows.append({"guard": m, "coverage": coverage, **r,
                     "monitor minus this": d["difference"] if d else np.nan,
                     "diff_lo": d["lo"] if d else np.nan, "diff_hi": d["hi"] if d else np.nan,
                     "τ (training)": tau, "coverage at τ": float(answered.mean()),
                     "risk at τ": float(yt[answered].mean()) if answered.any() else np.nan,
                     "tokens per question at τ": float(toks.mean()), "tokens unguarded": float(np.mean([x[-1][1] for x in sp]))})
    rows.append({"guard": "no guard", "coverage": 1.0, "risk": float(yt.mean()), "n": len(yt), "answered": len(yt),
                 "tokens per question at τ": float(np.mean([x[-1][1] for x in sp]))})
    return pd.concat(curves, ignore_index=True), pd.DataFrame(rows)


def _flags(records: Sequence[Any], te: np.ndarray, streams: Sequence[Any]) -> pd.DataFrame:
    rows = []
    for i, s in zip(te, streams):
        o = "abstained" if s.abstained else outcome(records[i].question, s.text, records[i].answers)
        rows.append({"outcome": o, "spent": s.spent if s.spent else len(s.token_ids), "resamples": s.resamples})
    f = pd.DataFrame(rows)
    f["answered"] = f.outcome.isin(["correct", "wrong"])
    f["correct"] = f.outcome == "correct"
    f["wrong_if_answered"] = np.where(f.answered, (f.outcome == "wrong").astype(float), np.nan)
    return f


def resample_table(records: Sequence[Any], te: np.ndarray, streams: Sequence[Any],
                   guarded: Mapping[str, Sequence[Any]], n_boot: int, *, seed: int) -> pd.DataFrame:
    """The resampling guards on the held-out questions against the unguarded answers: coverage, the
    hallucination rate among answered questions, accuracy over all questions (each with its interval), the
    accuracy difference to the unguarded answers (paired by question), resamples and tokens spent."""
    base = _flags(records, te, [streams[i] for i in te])
    rows = []
    for name, f in [("no guard", base)] + [(n, _flags(records, te, g)) for n, g in guarded.items()]:
        cov, risk, acc = (rate_with_ci(f.answered, n_boot, seed), rate_with_ci(f.wrong_if_answered.tolist(), n_boot, seed),
                          rate_with_ci(f.correct, n_boot, seed))
        d = paired_difference(f.correct.tolist(), [base.correct.tolist()], n_boot, seed)
        rows.append({"guard": name, "questions": len(f), "coverage": cov.rate, "coverage_lo": cov.lo, "coverage_hi": cov.hi,
                     "hallucinated among answered": risk.rate, "risk_lo": risk.lo, "risk_hi": risk.hi, "answered": risk.n,
                     "accuracy": acc.rate, "accuracy_lo": acc.lo, "accuracy_hi": acc.hi,
                     "accuracy minus unguarded": d["difference"], "acc_diff_lo": d["lo"], "acc_diff_hi": d["hi"],
                     "resamples per question": f.resamples.mean(), "tokens per question": f.spent.mean()})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the dashboard


def trace_table(streams: Sequence[Any], table: pd.DataFrame, te: np.ndarray, probe: StreamProbe,
                h_token: Sequence[np.ndarray], *, spans: Sequence[Sequence[tuple[int, int]]], k_h: int,
                tau: float, min_steps: int = 3) -> pd.DataFrame:
    """Per token of two held-out answers (the first hallucinated and the first correct one with at least
    ``min_steps`` sentences): the token, its sentence, notebook 03's running score, the step probe's
    score of its sentence, the prefix probe's score so far, and τ."""
    rows = []
    for label, want in (("hallucinated", 1.0), ("correct", 0.0)):
        pick = [i for i in te if table.hallucinated.iloc[i] == want and len(spans[i]) >= min_steps]
        if not pick:
            pick = [i for i in te if table.hallucinated.iloc[i] == want]
        if not pick:
            continue
        i = pick[0]
        s, sp = streams[i], spans[i]
        x = s.hcett[:, :k_h]
        step_p = probe.step_scores(x, sp)
        prefix_t = probe.at_tokens(x, sp, range(1, len(s.token_ids) + 1))
        for j, (a, b) in enumerate(sp):
            for t in range(a, b):
                start = s.ends[t - 1] if t else 0
                rows.append({"panel": label, "id": table.id.iloc[i], "question": table.question.iloc[i],
                             "token": t + 1, "text": s.text[start:s.ends[t]], "sentence": j + 1,
                             "03 running score": float(h_token[i][t]), "step probe": float(step_p[j]),
                             "prefix probe": float(prefix_t[t]), "tau": tau})
    return pd.DataFrame(rows)
