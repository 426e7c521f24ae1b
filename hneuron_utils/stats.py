"""Every interval, paired difference, slope and test of the workbook, in one place.

Intervals are percentile bootstraps over the unit that was sampled (questions or items), two-sided 95%
unless a docstring says otherwise; words for a result ("beat", "rises") are chosen from an interval by
:func:`verdict` and :func:`direction`, never typed.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

METRICS: tuple[str, ...] = ("accuracy", "auroc")


THRESHOLD = 0.5


def _labels(y: np.ndarray, n: int) -> np.ndarray:
    """Validate a 0/1 label vector of length n and return it as int64."""
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"y must be 1-D with {n} entries, got shape {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels must be 0 or 1, got values {sorted(set(np.unique(y).tolist()))}")
    return y.astype(np.int64)


def _auroc(y: np.ndarray, score: np.ndarray) -> float:
    """AUROC (Mann-Whitney U with average ranks for ties, equal to sklearn's roc_auc_score), or NaN
    when y has a single class. Cheap enough to call thousands of times in a bootstrap."""
    n1 = int(np.sum(y == 1))
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    _, inv, counts = np.unique(score, return_inverse=True, return_counts=True)
    avg_rank = np.cumsum(counts) - (counts - 1) / 2  # 1-based average rank of each distinct score
    return float((avg_rank[inv][y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _metric(metric: str, y: np.ndarray, prob: np.ndarray, threshold: float = THRESHOLD) -> float:
    """One metric of :func:`evaluate` without input validation."""
    return float(np.mean((prob > threshold) == y)) if metric == "accuracy" else _auroc(y, prob)


def evaluate(y: np.ndarray, prob: np.ndarray, threshold: float = THRESHOLD) -> dict[str, float]:
    """Accuracy (predict 1 when prob > threshold, as sklearn's predict) and AUROC (NaN if one class)."""
    prob = np.asarray(prob, dtype=np.float64)
    y = _labels(y, len(prob))
    return {m: _metric(m, y, prob, threshold) for m in METRICS}


def bootstrap_ci(
    y: np.ndarray, prob: np.ndarray, metric: str, n_boot: int, seed: int, *, level: float = 0.95
) -> tuple[float, float, float]:
    """(point, lo, hi): percentile bootstrap over examples of ``evaluate(y, prob)[metric]``.

    For AUROC, resamples with a single class are skipped (so fewer than n_boot may be used).
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; valid metrics: {', '.join(METRICS)}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    prob = np.asarray(prob, dtype=np.float64)
    y = _labels(y, len(prob))
    point = evaluate(y, prob)[metric]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        if metric == "auroc" and y[idx].min() == y[idx].max():
            continue
        values.append(_metric(metric, y[idx], prob[idx]))
    if not values:
        raise ValueError("no bootstrap resample had both classes")
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return point, float(lo), float(hi)


@dataclass(frozen=True)


class RateCI:
    """Mean of a 0/1 list with a percentile-bootstrap interval; ``n`` used, ``n_excluded`` None/NaN."""

    rate: float
    lo: float
    hi: float
    n: int
    n_positive: int
    n_excluded: int


def rate_with_ci(flags: Iterable[bool | int | float | None], n_boot: int = 2000, seed: int = 0,
                 level: float = 0.95) -> RateCI:
    """Rate of True/1 among the non-missing ``flags`` and its percentile-bootstrap ``level`` interval.

    None and NaN are excluded and counted in ``n_excluded`` (e.g. "unclear" verdicts); any other value
    than 0/1/True/False raises ValueError. With no usable flags every number is NaN.
    """
    if n_boot < 1 or not 0 < level < 1:
        raise ValueError(f"need n_boot >= 1 and 0 < level < 1, got {n_boot}, {level}")
    kept, excluded = [], 0
    for f in flags:
        if f is None or (isinstance(f, float) and math.isnan(f)):
            excluded += 1
            continue
        if f not in (0, 1):  # True == 1, False == 0
            raise ValueError(f"flags must be 0/1/True/False/None/NaN, got {f!r}")
        kept.append(float(f))
    if not kept:
        return RateCI(math.nan, math.nan, math.nan, 0, 0, excluded)
    x = np.asarray(kept)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return RateCI(float(x.mean()), float(lo), float(hi), len(x), int(x.sum()), excluded)


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for ``k`` successes of ``n``: it never collapses to a point at 0 or n."""
    if n < 1 or not 0 <= k <= n or not 0 < level < 1:
        raise ValueError(f"need 0 <= k <= n, n >= 1 and 0 < level < 1, got k={k}, n={n}, level={level}")
    from scipy.stats import norm

    z = float(norm.ppf((1 + level) / 2))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (0.0 if k == 0 else centre - half), (1.0 if k == n else centre + half)


def paired_difference(h_flags: Sequence[Any], random_flags: Sequence[Sequence[Any]], n_boot: int, seed: int,
                      level: float = 0.95) -> dict[str, float]:
    """Rate(H) − mean over draws of rate(random), with a percentile bootstrap over items (the same items
    resampled for H and every draw). Items whose H flag or any draw's flag is None/NaN are left out."""
    H = np.array([np.nan if f is None else float(f) for f in h_flags])
    R = np.array([[np.nan if f is None else float(f) for f in d] for d in random_flags])
    if R.ndim != 2 or R.shape[1] != len(H):
        raise ValueError("every random draw needs one flag per item, aligned with h_flags")
    ok = ~np.isnan(H) & ~np.isnan(R).any(0)
    H, R = H[ok], R[:, ok]
    if len(H) == 0:
        return {"difference": math.nan, "lo": math.nan, "hi": math.nan, "n": 0}
    diff = H - R.mean(0)  # per item
    rng = np.random.default_rng(seed)
    boots = diff[rng.integers(0, len(diff), size=(n_boot, len(diff)))].mean(1)
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return {"difference": float(diff.mean()), "lo": float(lo), "hi": float(hi), "n": int(len(diff))}


def _flag_matrix(alphas: Sequence[float], flags_by_alpha: Mapping[float, Sequence[Any]]) -> np.ndarray:
    """[α, item] matrix of 0/1 flags, NaN where a flag is None."""
    return np.array([[np.nan if f is None else float(f) for f in flags_by_alpha[float(a)]] for a in alphas])


def _rate_slope(x: np.ndarray, mat: np.ndarray) -> float:
    """Least-squares slope (percentage points per unit α) of the per-α mean of ``mat`` [α, item]."""
    with warnings.catch_warnings():  # an all-missing α in a resample gives numpy's "Mean of empty slice"
        warnings.simplefilter("ignore", RuntimeWarning)
        y = 100 * np.nanmean(mat, axis=1)
    good = ~np.isnan(y)
    if good.sum() < 2:
        return math.nan
    return float(np.round(np.polyfit(x[good], y[good], 1)[0], 9))  # no 1e-15 residue for a flat line


def detectable(se: float, level: float = 0.95, power: float = 0.8) -> float:
    """The smallest true effect a two-sided test at ``level`` detects with probability ``power``, given
    the estimate's standard error: (z_{(1+level)/2} + z_power) · se (2.80 · se for 95% and 80%)."""
    from scipy.stats import norm

    return float((norm.ppf((1 + level) / 2) + norm.ppf(power)) * se)


def slope(alphas: Sequence[float], flags_by_alpha: Mapping[float, Sequence[Any]], n_boot: int, seed: int,
          level: float = 0.95) -> dict[str, float]:
    """Least-squares slope of the compliance rate (percentage points) against α, with a percentile
    bootstrap over items (each item is a cluster: resampled jointly across α). Items missing (None) at
    some α are dropped at that α only. Also the bootstrap standard error and the smallest slope the run
    could detect (:func:`detectable`: two-sided at ``level``, 80% power)."""
    alphas = [float(a) for a in alphas]
    if len(alphas) < 2:
        raise ValueError("a slope needs at least two alpha values")
    M, x = _flag_matrix(alphas, flags_by_alpha), np.asarray(alphas)
    rng = np.random.default_rng(seed)
    n = M.shape[1]
    point = _rate_slope(x, M)
    boots = np.array([_rate_slope(x, M[:, rng.integers(0, n, size=n)]) for _ in range(n_boot)])
    boots = boots[~np.isnan(boots)]
    lo, hi = (np.quantile(boots, [(1 - level) / 2, (1 + level) / 2]) if len(boots) else (math.nan, math.nan))
    se = float(boots.std(ddof=1)) if len(boots) > 1 else math.nan
    return {"slope": point, "lo": float(lo), "hi": float(hi), "n": int(n), "se": se,
            "detectable": detectable(se, level) if not math.isnan(se) else math.nan}


def slope_difference(alphas: Sequence[float], h_by_alpha: Mapping[float, Sequence[Any]],
                     random_by_alpha: Sequence[Mapping[float, Sequence[Any]]], n_boot: int, seed: int,
                     *, level: float = 0.95) -> dict[str, float]:
    """H-neuron slope minus the mean of the random sets' slopes (percentage points per unit α), paired by
    item: one bootstrap resample of items is used for H and every random set, across all α. Returns the
    difference, its percentile interval, n, the bootstrap standard error and the smallest detectable
    difference (:func:`detectable`)."""
    alphas = [float(a) for a in alphas]
    if len(alphas) < 2 or not random_by_alpha:
        raise ValueError("a slope difference needs at least two alpha values and one random set")
    x = np.asarray(alphas)
    H = _flag_matrix(alphas, h_by_alpha)
    R = [_flag_matrix(alphas, r) for r in random_by_alpha]
    if any(r.shape != H.shape for r in R):
        raise ValueError("every random set needs one flag per item at every alpha, aligned with the H-neurons'")

    def diff(idx: np.ndarray) -> float:
        return _rate_slope(x, H[:, idx]) - float(np.mean([_rate_slope(x, r[:, idx]) for r in R]))

    n = H.shape[1]
    rng = np.random.default_rng(seed)
    point = diff(np.arange(n))
    boots = np.array([diff(rng.integers(0, n, size=n)) for _ in range(n_boot)])
    boots = boots[~np.isnan(boots)]
    lo, hi = (np.quantile(boots, [(1 - level) / 2, (1 + level) / 2]) if len(boots) else (math.nan, math.nan))
    se = float(boots.std(ddof=1)) if len(boots) > 1 else math.nan
    return {"difference": point, "lo": float(lo), "hi": float(hi), "n": int(n), "se": se,
            "detectable": detectable(se, level) if not math.isnan(se) else math.nan}


def direction(lo: float, hi: float, tol: float = 1e-9) -> str:
    """Words for a slope's 95% interval: rises / falls (the interval excludes 0), does not change (every
    resample gives 0: the rate is the same at every α), or shows no clear trend."""
    if abs(lo) < tol and abs(hi) < tol:
        return "does not change (the same rate at every α)"
    return {1: "rises", -1: "falls", 0: "shows no clear trend"}[interval_side(lo, hi)]


def inertia_test(ranks: np.ndarray, h_flat: Sequence[int], n_permutations: int, seed: int) -> dict[str, float]:
    """The H-neurons' mean normalised rank against all other neurons (higher = changed less).

    Two-sided tests (did the H-neurons change differently, in either direction?): a Welch t-test with the
    95% interval of the difference in mean rank (H − others), and a permutation test over random sets of
    the same size (p = share of sets whose mean is at least as far from the all-neuron mean, counting the
    observed set). Beside them the paper's one-sided tests (H greater = changed less), and the smallest
    difference this test could detect (80% power at the two-sided 5% level: 2.8 standard errors)."""
    from scipy import stats as sps

    flat = np.asarray(ranks).ravel()
    h = np.zeros(len(flat), bool)
    idx = np.asarray(h_flat, dtype=np.int64)
    if len(idx) == 0 or idx.min() < 0 or idx.max() >= len(flat):
        raise ValueError("H-neuron indices must be a non-empty set of flat indices into the ranks")
    h[idx] = True
    two = sps.ttest_ind(flat[h], flat[~h], equal_var=False)
    one = sps.ttest_ind(flat[h], flat[~h], equal_var=False, alternative="greater")
    ci = two.confidence_interval(0.95)
    se = float(np.sqrt(flat[h].var(ddof=1) / h.sum() + flat[~h].var(ddof=1) / (~h).sum())) if h.sum() > 1 else np.nan
    obs = flat[h].mean()
    rng = np.random.default_rng(seed)
    k = int(h.sum())
    perm = np.array([flat[rng.choice(len(flat), k, replace=False)].mean() for _ in range(n_permutations)])
    centre = flat.mean()
    return {"H-neurons": k, "H mean rank": float(obs), "others mean rank": float(flat[~h].mean()),
            "difference (H - others)": float(obs - flat[~h].mean()), "difference lo": float(ci.low),
            "difference hi": float(ci.high), "t": float(two.statistic), "p (t-test, two-sided)": float(two.pvalue),
            "p (permutation, two-sided)": float((1 + (np.abs(perm - centre) >= abs(obs - centre)).sum()) / (1 + n_permutations)),
            "p (t-test, one-sided)": float(one.pvalue),
            "p (permutation)": float((1 + (perm >= obs).sum()) / (1 + n_permutations)),
            "smallest detectable difference": 2.8 * se, "permutations": n_permutations}


def interval_side(lo: float, hi: float, null: float = 0.0) -> int:
    """The workbook's one rule for reading an interval: +1 when it lies above ``null`` (0 for a difference,
    0.5 for an AUROC against chance), -1 when it lies below, 0 when it includes ``null``. Every sentence that
    says "rose", "beat", "transfers" or "no detectable difference" gets its word from here."""
    return 1 if lo > null else -1 if hi < null else 0  # a NaN end compares False: read as "includes" (callers that
                                                       # can say more, like verdict, check for it first)


def verdict(diff_lo: float, diff_hi: float, a: str, b: str) -> str:
    """Words for ``a`` versus ``b`` chosen by the paired interval of a − b (two-sided 95%)."""
    if not (np.isfinite(diff_lo) and np.isfinite(diff_hi)):
        return f"{a} and {b} cannot be compared here"
    return {1: f"{a} beat {b}", -1: f"{a} are beaten by {b}",
            0: f"{a} do not beat {b} (the interval of the difference includes 0)"}[interval_side(diff_lo, diff_hi)]


def cohen_kappa(pred: Sequence[Any], gold: Sequence[Any]) -> float:
    """Cohen's (unweighted) kappa of two labelings of the same items, over whatever classes they use (two or more):
    (observed agreement − chance agreement) / (1 − chance agreement), chance from each labeling's class shares.
    NaN when chance agreement is 1 (both labelings use one and the same class). The workbook's one κ."""
    pred, gold = np.asarray(pred, dtype=object), np.asarray(gold, dtype=object)
    if pred.shape != gold.shape or pred.ndim != 1 or len(pred) == 0:
        raise ValueError(f"cohen_kappa needs two non-empty labelings of the same length, got {pred.shape} and {gold.shape}")
    agree = float(np.mean(pred == gold))
    classes = set(pred.tolist()) | set(gold.tolist())
    pe = sum(float(np.mean(pred == c)) * float(np.mean(gold == c)) for c in classes)
    return float((agree - pe) / (1 - pe)) if pe < 1 - 1e-12 else float("nan")


def kappa_interval(pred: Sequence[Any], gold: Sequence[Any], *, n_boot: int, seed: int = 0,
                   groups: Sequence[Any] | None = None) -> tuple[float, float]:
    """95% percentile-bootstrap interval of :func:`cohen_kappa`, resampling rows, or whole groups when ``groups``
    names each row's group (e.g. its question: responses to one question are not independent). Resamples in
    which κ is undefined (one class only) are left out; (NaN, NaN) when none defines it."""
    pred, gold = np.asarray(pred), np.asarray(gold)
    rng = np.random.default_rng(seed)
    if groups is None:
        boots = [cohen_kappa(pred[i], gold[i]) for i in rng.integers(0, len(gold), (n_boot, len(gold)))]
    else:
        ids = np.asarray(groups)
        members = [np.flatnonzero(ids == g) for g in pd.unique(ids)]
        boots = []
        for _ in range(n_boot):
            idx = np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
            boots.append(cohen_kappa(pred[idx], gold[idx]))
    arr = np.asarray(boots, dtype=float)
    if not np.isfinite(arr).any():
        return float("nan"), float("nan")
    lo, hi = np.nanquantile(arr, [0.025, 0.975])
    return float(lo), float(hi)


def spearman_interval(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Spearman's ρ between two measures over the same units with a 95% interval from Fisher's z and the
    Fieller–Hartley–Pearson standard error √(1.06 / (n − 3)) (the units treated as independent)."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    if len(x) != len(y) or len(x) < 10:
        raise ValueError(f"need two measures over the same ≥ 10 units, got {len(x)} and {len(y)}")
    rho = float(spearmanr(x, y).statistic)
    z, se = np.arctanh(np.clip(rho, -0.999999, 0.999999)), np.sqrt(1.06 / (len(x) - 3))
    return rho, float(np.tanh(z - 1.96 * se)), float(np.tanh(z + 1.96 * se))


def paired_auroc(y: np.ndarray, scores: Mapping[str, np.ndarray], reference: str, n_boot: int, seed: int) -> pd.DataFrame:
    """AUROC of each score with a bootstrap interval, and its paired difference from ``reference`` (the
    same examples resampled for both)."""
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    idx = [i for i in (rng.integers(0, len(y), len(y)) for _ in range(n_boot)) if 0 < y[i].sum() < len(i)]
    ref = np.array([_auroc(y[i], scores[reference][i]) for i in idx])
    rows = []
    for name, s in scores.items():
        b = np.array([_auroc(y[i], s[i]) for i in idx])
        row = {"model": name, "auroc": _auroc(y, s), "auroc lo": np.quantile(b, 0.025), "auroc hi": np.quantile(b, 0.975),
               "n faithful": int((y == 0).sum()), "n hallucinated": int((y == 1).sum())}
        if name != reference:
            d = b - ref
            row.update({"change": row["auroc"] - _auroc(y, scores[reference]), "change lo": np.quantile(d, 0.025),
                        "change hi": np.quantile(d, 0.975)})
        rows.append(row)
    return pd.DataFrame(rows)


def mean_with_ci(values: Sequence[float], *, n_boot: int, seed: int, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi): the mean of ``values`` with a percentile-bootstrap ``level`` interval. Raises on an
    empty list; a list whose values are all equal gives lo = hi = the mean (say so rather than print it as
    an interval)."""
    x = np.asarray(list(values), dtype=np.float64)
    if x.size == 0:
        raise ValueError("mean_with_ci needs at least one value")
    if n_boot < 1 or not 0 < level < 1:
        raise ValueError(f"need n_boot >= 1 and 0 < level < 1, got {n_boot}, {level}")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(x.mean()), float(lo), float(hi)
