"""Introspection statistics: rates per layer × strength for every condition, paired differences against the
controls, the coherence rule, the judges against reference labels, and readings whose words follow the intervals."""

from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np
import pandas as pd

from hneuron_utils.judges.agreement import agreement_summary
from hneuron_utils.stats import kappa_interval, rate_with_ci

MEASURES = ("claims", "names", "detect_and_name", "coherent")


def coherent(text: str) -> bool:
    """Rule: a response is coherent when letters make up ≥ 60% of its non-space characters and, from 8 words
    on, at least half of its words are distinct and no word makes up more than a quarter of them (from 4
    words on: no word more than half). Short plain replies ("No.", "I can't tell.") are coherent; empty ones,
    loops and strings of digits or symbols are not."""
    words = re.findall(r"[^\W\d_]+", text.lower())
    chars = re.sub(r"\s", "", text)
    if not words or not chars or sum(c.isalpha() for c in chars) / len(chars) < 0.6:
        return False
    top = max(words.count(w) for w in set(words)) / len(words)
    if len(words) >= 8:
        return len(set(words)) / len(words) >= 0.5 and top <= 0.25
    return len(words) < 4 or top <= 0.5


def add_coherence(judged: pd.DataFrame) -> pd.DataFrame:
    return judged.assign(coherent=judged.response.map(coherent).astype(bool))


def _paired(a: np.ndarray, b: np.ndarray, n_boot: int, seed: int, level: float = 0.95) -> tuple[float, float, float]:
    d = a.astype(float) - b.astype(float)
    boots = d[np.random.default_rng(seed).integers(0, len(d), (n_boot, len(d)))].mean(1)
    return float(d.mean()), float(np.quantile(boots, (1 - level) / 2)), float(np.quantile(boots, (1 + level) / 2))


def cell_table(judged: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """One row per (layer, strength, condition ∈ concept / random / neutral, measure): the rate over concepts
    with its 95% interval and n; and, for the injected-concept rows, the paired difference (by concept) from the
    random-vector control and from the no-injection trial of the same number. The difference from the random
    control also gets a Bonferroni interval over the cells (``adjusted``), for reading the best cell."""
    none = judged[judged.condition == "none"].set_index("concept")
    rows = []
    inj = judged[judged.condition.isin(["concept", "random", "neutral"])]
    n_cells = inj.groupby(["layer", "strength"]).ngroups
    for (layer, s), g in inj.groupby(["layer", "strength"]):
        by = {c: g[g.condition == c].set_index("concept").sort_index() for c in ("concept", "random", "neutral")}
        for cond, t in by.items():
            for m in MEASURES:
                ci = rate_with_ci(t[m], n_boot, seed)
                row = {"layer": int(layer), "strength": s, "condition": cond, "measure": m, "rate": ci.rate,
                       "lo": ci.lo, "hi": ci.hi, "n": ci.n}
                if cond == "concept":
                    r = by["random"][m].reindex(t.index).to_numpy()
                    row["minus random"], row["minus random lo"], row["minus random hi"] = _paired(t[m].to_numpy(), r, n_boot, seed)
                    _, row["adjusted lo"], row["adjusted hi"] = _paired(t[m].to_numpy(), r, n_boot, seed, 1 - 0.05 / n_cells)
                    if m in ("claims", "coherent"):
                        z = none[m].reindex(t.index).to_numpy()
                        row["minus none"], row["minus none lo"], row["minus none hi"] = _paired(t[m].to_numpy(), z, n_boot, seed)
                rows.append(row)
    return pd.DataFrame(rows)


def control_rates(judged: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """The no-injection trials: how often the model claims a detection (false positives), names the trial's
    concept anyway, and stays coherent; n = trials."""
    t = judged[judged.condition == "none"]
    rows = []
    for m in MEASURES:
        ci = rate_with_ci(t[m], n_boot, seed)
        rows.append({"measure": m, "rate": ci.rate, "lo": ci.lo, "hi": ci.hi, "n": ci.n, "positive": ci.n_positive,
                     "distinct responses": int(t.response.nunique()) if "response" in t else None})
    return pd.DataFrame(rows)


def best_cell(cells: pd.DataFrame) -> pd.Series:
    """The (layer, strength) whose injected-concept detect-and-name rate exceeds the random-vector control's the
    most (ties: the higher rate, then the earlier layer). Chosen on the same trials it is reported on, so its
    rate is an optimistic estimate."""
    c = cells[(cells.condition == "concept") & (cells.measure == "detect_and_name")]
    c = c.sort_values(["minus random", "rate", "layer", "strength"], ascending=[False, False, True, True])
    return c.iloc[0]


def smallest_detectable(n: int, level: float = 0.95, power: float = 0.8) -> float:
    """The smallest true rate, over a control that never fires, that a run of ``n`` paired trials would tell
    from 0 with probability ``power``: the percentile bootstrap's interval excludes 0 once at least k* of the
    n trials are positive, k* the smallest k with (1 − k/n)^n < (1 − level)/2; the answer is the smallest p
    with P(Binomial(n, p) ≥ k*) ≥ ``power``."""
    from scipy.stats import binom

    if n < 1:
        return float("nan")
    k = next((k for k in range(1, n + 1) if (1 - k / n) ** n < (1 - level) / 2), n)
    grid = np.linspace(0, 1, 2001)
    return float(grid[np.argmax(binom.sf(k - 1, n, grid) >= power)])


# --------------------------------------------------------------------------- the judges against reference labels

LABEL_COLUMNS = ("claims", "names", "coherent")


def rule_verdicts(rows: pd.DataFrame, concepts: Sequence[Any]) -> pd.DataFrame:
    """The three rule judges on rows with ``response`` and ``word`` (the trial's concept word; empty for the
    neutral request without injection)."""
    from hneuron_utils.introspection.trials import claims_detection, names_concept

    by_word = {c.word: c for c in concepts}
    missing = set(rows.word.dropna()) - set(by_word) - {""}
    if missing:
        raise ValueError(f"unknown concept words: {sorted(missing)}")
    return pd.DataFrame({"claims": rows.response.map(claims_detection).astype(bool),
                         "names": [bool(w) and names_concept(t, by_word[w]) for t, w in zip(rows.response, rows.word.fillna(""))],
                         "coherent": rows.response.map(coherent).astype(bool)}, index=rows.index)


def judge_agreement(labels: pd.DataFrame, concepts: Sequence[Any]) -> pd.DataFrame:
    """Each rule judge against the reference labels (columns ``claims``, ``names``, ``coherent`` of
    ``labels``, with ``response``, ``word`` and ``condition``): agreement, Cohen's κ, the majority baseline
    (the share of the more common reference label), n and the reference-label positive count; over all labels and
    per condition. The rules are re-run on the labelled text, so the table does not depend on the run."""
    missing = labels[list(LABEL_COLUMNS)].isna().any(axis=1)
    if missing.any():
        raise ValueError(f"{int(missing.sum())} reference-label rows lack a label (rows {labels.index[missing][:5].tolist()})")
    rule = rule_verdicts(labels, concepts)
    rows = []
    for what, idx in [("all", labels.index), *((f"condition {c}", g.index) for c, g in labels.groupby("condition"))]:
        for col in LABEL_COLUMNS:
            gold, pred = labels.loc[idx, col].astype(bool).to_numpy(), rule.loc[idx, col].to_numpy()
            a = agreement_summary(pred, gold)
            lo, hi = kappa_interval(pred, gold, n_boot=1000, seed=0)
            rows.append({"judge": col, "responses": what, "n": len(idx), "reference positive": int(gold.sum()),
                         "agreement": a["agreement"], "kappa": a["kappa"],
                         "kappa lo": lo, "kappa hi": hi, "majority_baseline": a["majority baseline"]})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- readings


def leak_table(judged: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """How often the injected concept is named under the detection question and under the neutral request,
    per concept averaged over the layer × strength cells, and the paired difference (bootstrap over concepts)."""
    t = judged[judged.condition.isin(["concept", "neutral"])].astype({"names": float})
    per = t.pivot_table(index="concept", columns="condition", values="names", aggfunc="mean")
    rows = []
    for c in ("concept", "neutral"):
        v = per[c].to_numpy(float)
        boots = v[np.random.default_rng(seed).integers(0, len(v), (n_boot, len(v)))].mean(1)
        rows.append({"question": "detection" if c == "concept" else "neutral request", "names the concept": v.mean(),
                     "lo": np.quantile(boots, 0.025), "hi": np.quantile(boots, 0.975), "concepts": len(v)})
    d, lo, hi = _paired(per["concept"].to_numpy(), per["neutral"].to_numpy(), n_boot, seed)
    rows.append({"question": "detection minus neutral", "names the concept": d, "lo": lo, "hi": hi, "concepts": len(per)})
    return pd.DataFrame(rows)
