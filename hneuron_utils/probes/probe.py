"""Sparse probes on CETT features: the L1 logistic probe that finds H-neurons, and its checks.

Every example (question, response) has two CETT vectors of length ``n_layers * d_ff``: ``ans`` (mean
over answer tokens) and ``oth`` (mean over the other tokens). Stored as ``[N, n_layers, d_ff]``, they
are flattened row-major, so ``flat_index = layer * d_ff + neuron``. Label 1 = hallucinated.

The probe is the paper's: L1 logistic regression (liblinear, no class weights, no scaling; fitted
to convergence, see :func:`fit_l1`), trained either "3-vs-1" (hallucinated answer features against faithful answer
features and every example's other-token features) or "1-vs-1" (answer features only). It is always
evaluated on answer features. H-neurons are the features with a positive coefficient.

Checks: a C grid with held-out metrics and two selection rules, percentile bootstrap intervals, a
refit of the same small classifier on the H-neuron set and on random neuron sets (fair comparison),
bootstrap stability of the selected set (Jaccard), and a response-length confound check.

Memory (read before fitting ~600 x 250,000): pass float32 C-contiguous arrays; scikit-learn then
makes no dense copy, but liblinear always rebuilds the data as its own sparse ``feature_node`` list
(an int index + a float64 value, 16 bytes per non-zero entry, zeros skipped) and the L1 solver
builds a second, column-major copy of it, so the peak is about 32 bytes per non-zero on top of the
input. A ``scipy.sparse`` CSR input goes through the same conversion and saves nothing on dense
CETT data. :func:`l1_memory_estimate` gives the number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
import math
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from hneuron_utils.stats import THRESHOLD, _labels, _auroc, evaluate

MODES: tuple[str, ...] = ("3-vs-1", "1-vs-1")
RULES: tuple[str, ...] = ("held_out", "paper")


# --------------------------------------------------------------------------- data


def flatten(features: np.ndarray) -> np.ndarray:
    """[N, L, F] (or already [N, L*F]) -> float32 C-contiguous [N, L*F]; no copy when already so."""
    a = np.asarray(features)
    if a.ndim == 3:
        a = a.reshape(a.shape[0], -1)
    elif a.ndim != 2:
        raise ValueError(f"features must be [N, n_layers, d_ff] or [N, n_features], got shape {a.shape}")
    return np.ascontiguousarray(a, dtype=np.float32)


def _check_mode(mode: str) -> None:
    """Raise ValueError unless mode is one of MODES."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; valid modes: {', '.join(MODES)}")


def _rows(a: np.ndarray) -> tuple[int, int]:
    """(N, n_features) of a [N, L, F] or [N, P] array."""
    a = np.asarray(a)
    if a.ndim not in (2, 3):
        raise ValueError(f"features must be 2-D or 3-D, got shape {a.shape}")
    return a.shape[0], int(np.prod(a.shape[1:]))


def training_set(ans: np.ndarray, oth: np.ndarray | None, y: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """The probe's training matrix and labels.

    "3-vs-1": X = [ans; oth], y = [y; 0...] (label 1 = answer features of hallucinated examples).
    "1-vs-1": X = ans, y = y (``oth`` is ignored and may be None).
    X is float32 C-contiguous; for 3-vs-1 it is written once into a new [2N, P] array.
    """
    _check_mode(mode)
    n, p = _rows(ans)
    y = _labels(y, n)
    if mode == "1-vs-1":
        return flatten(ans), y
    if oth is None:
        raise ValueError("mode '3-vs-1' needs the other-token features (oth), got None")
    if np.shape(oth) != np.shape(ans):
        raise ValueError(f"oth shape {np.shape(oth)} differs from ans shape {np.shape(ans)}")
    X = np.empty((2 * n, p), dtype=np.float32)
    X[:n] = np.asarray(ans).reshape(n, p)
    X[n:] = np.asarray(oth).reshape(n, p)
    return X, np.concatenate([y, np.zeros(n, dtype=np.int64)])


def l1_memory_estimate(n_rows: int, n_features: int, density: float = 1.0) -> int:
    """Approximate peak bytes of an L1 liblinear fit on a float32 [n_rows, n_features] input.

    Input (4 B/entry) + liblinear's row copy and its column copy (16 B per non-zero each).
    """
    nnz = n_rows * n_features * density
    return int(4 * n_rows * n_features + 32 * (nnz + 2 * n_rows + n_features))


# --------------------------------------------------------------------------- probe


L1_TOL = 1e-6          # scikit-learn's default (1e-4, the official code's) stops early on ~250k CETT features
L1_MAX_ITER = 100_000  # liblinear's outer iterations; a fit that reaches this is not converged


class NotConvergedWarning(UserWarning):
    """The L1 fit stopped at its iteration cap: its positive set is not the L1 optimum."""


def fit_l1(X: np.ndarray, y: np.ndarray, C: float, seed: int, tol: float = L1_TOL,
           *, max_iter: int = L1_MAX_ITER) -> LogisticRegression:
    """The paper's probe: L1 logistic regression in liblinear's formulation (no class weights, no
    scaling), fitted to convergence (``tol``; the official code uses scikit-learn's default 1e-4, which
    on CETT features stops early and makes the positive set depend on the solver's seed).

    The fitted model carries ``n_iter`` and ``converged``; a fit that hits ``max_iter`` warns loudly.
    Pass X as float32 C-contiguous (see the module docstring on memory).
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    from hneuron_utils.checks import class_counts, require_counts

    require_counts("L1 probe fit (rows per label)", class_counts(y, {0: "label 0", 1: "label 1"}), 1,
                   ("n_train_per_class", "the 01 rule"))
    model = LogisticRegression(C=C, l1_ratio=1.0, solver="liblinear", max_iter=max_iter, tol=tol,
                               random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # replaced by our own, louder one below
        model.fit(X, y)
    model.n_iter = int(np.max(model.n_iter_))
    model.converged = model.n_iter < max_iter
    if not model.converged:
        warnings.warn(f"L1 fit at C = {C} did NOT converge in {max_iter} iterations (tol {tol}): its positive "
                      "set is not the L1 optimum and may depend on the solver seed", NotConvergedWarning,
                      stacklevel=2)
    return model


def l1_objective(model: LogisticRegression, X: np.ndarray, y: np.ndarray) -> float:
    """liblinear's L1 objective ‖w‖₁ + C·Σ log(1 + exp(−y_i·(w·x_i + b))) (the intercept is a feature)."""
    w = model.coef_[0].astype(np.float64)
    b = float(model.intercept_[0])
    m = (2 * np.asarray(y) - 1) * (flatten(X) @ w + b)
    return float(np.abs(w).sum() + abs(b) + model.C * np.logaddexp(0, -m).sum())


def scores(model: object, X: np.ndarray) -> np.ndarray:
    """P(y=1) for each row: ``predict_proba(X)[:, 1]`` if the model has it, else ``model(X)``."""
    X = flatten(X)
    if hasattr(model, "predict_proba"):
        return np.asarray(model.predict_proba(X))[:, 1]
    if callable(model):
        return np.asarray(model(X), dtype=np.float64)
    raise TypeError(f"{type(model).__name__} has no predict_proba and is not callable")


# --------------------------------------------------------------------------- C grid and selection


@dataclass
class GridResult:
    """One probe per C: the summary table and the fitted coefficients, keyed by C."""

    table: pd.DataFrame
    coefs: dict[float, np.ndarray] = field(default_factory=dict)
    intercepts: dict[float, float] = field(default_factory=dict)

    def positive(self, C: float) -> np.ndarray:
        """Flat indices of the positive coefficients of the probe fitted with C."""
        return np.flatnonzero(self.coefs[C] > 0)


def c_grid(
    ans_tr: np.ndarray,
    oth_tr: np.ndarray | None,
    y_tr: np.ndarray,
    ans_val: np.ndarray,
    y_val: np.ndarray,
    *, Cs: Iterable[float],
    mode: str,
    seed: int,
    n_layers: int,
    d_ff: int,
    tol: float = L1_TOL,
) -> GridResult:
    """Fit the L1 probe for every C and score it on the validation answer features.

    Table columns: C, n_positive, n_nonzero, permille (n_positive per 1000 neurons), val_accuracy,
    val_auroc. The training matrix is built once and shared by all fits.
    """
    X, y = training_set(ans_tr, oth_tr, y_tr, mode)
    if X.shape[1] != n_layers * d_ff:
        raise ValueError(f"{X.shape[1]} features, expected n_layers * d_ff = {n_layers * d_ff}")
    X_val = flatten(ans_val)
    rows, coefs, intercepts = [], {}, {}
    for C in Cs:
        C = float(C)
        model = fit_l1(X, y, C, seed, tol=tol)
        coef = model.coef_[0].copy()
        coefs[C], intercepts[C] = coef, float(model.intercept_[0])
        n_pos = int((coef > 0).sum())
        rows.append({"C": C, "n_positive": n_pos, "n_nonzero": int((coef != 0).sum()),
                     "n_iter": model.n_iter, "converged": model.converged,
                     "permille": n_pos / (n_layers * d_ff) * 1000,
                     **{f"val_{k}": v for k, v in evaluate(y_val, scores(model, X_val)).items()}})
    return GridResult(pd.DataFrame(rows), coefs, intercepts)


def select_c(table: pd.DataFrame, rule: str = "held_out") -> pd.Series:
    """The selected row of a :func:`c_grid` table (its ``C`` is ``row["C"]``).

    "held_out": max val_accuracy. "paper": max val_accuracy + suppressed_accuracy, a column the
    caller adds (TriviaQA accuracy with the selected neurons suppressed); rows where it is NaN are
    skipped. Ties -> larger val_auroc, then smaller n_positive. Rows with no positive coefficient
    cannot be selected.
    """
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; valid rules: {', '.join(RULES)}")
    t = table[table["n_positive"] > 0].copy()
    if rule == "paper":
        if "suppressed_accuracy" not in table.columns:
            raise KeyError("rule 'paper' needs a 'suppressed_accuracy' column (TriviaQA accuracy with the "
                           "selected neurons suppressed); add it to the c_grid table first")
        t = t[t["suppressed_accuracy"].notna()]
        t["_score"] = t["val_accuracy"] + t["suppressed_accuracy"]
    else:
        t["_score"] = t["val_accuracy"]
    if t.empty:
        raise ValueError(f"no selectable C for rule {rule!r}: every row has n_positive == 0"
                         + (" or no suppressed_accuracy" if rule == "paper" else ""))
    t["_auroc"] = t["val_auroc"].fillna(-np.inf)
    best = t.sort_values(["_score", "_auroc", "n_positive"], ascending=[False, False, True], kind="stable")
    return table.loc[best.index[0]]


def h_neurons(coef: np.ndarray, n_layers: int, d_ff: int) -> pd.DataFrame:
    """Positive coefficients as (layer, neuron, flat_index, coefficient), largest coefficient first."""
    coef = np.asarray(coef).ravel()
    if coef.size != n_layers * d_ff:
        raise ValueError(f"{coef.size} coefficients, expected n_layers * d_ff = {n_layers * d_ff}")
    idx = np.flatnonzero(coef > 0)
    idx = idx[np.argsort(-coef[idx], kind="stable")]
    return pd.DataFrame({"layer": idx // d_ff, "neuron": idx % d_ff, "flat_index": idx,
                         "coefficient": coef[idx].astype(np.float64)})


# --------------------------------------------------------------------------- subset classifiers


@dataclass
class SubsetClassifier:
    """L2 logistic regression on standardised feature columns; call it on answer features."""

    columns: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    model: LogisticRegression

    def predict_proba_ans(self, ans: np.ndarray) -> np.ndarray:
        """P(hallucinated) from full answer features ([N, L, F] or [N, L*F])."""
        Z = (flatten(ans)[:, self.columns] - self.mean) / self.std
        return self.model.predict_proba(Z)[:, 1]

    __call__ = predict_proba_ans


def _columns(columns: Iterable[int], n_features: int) -> np.ndarray:
    """Validate a non-empty set of distinct column indices in range; return them as int64."""
    cols = np.asarray(list(columns), dtype=np.int64).ravel()
    if cols.size == 0:
        raise ValueError("columns is empty")
    if len(np.unique(cols)) != cols.size:
        raise ValueError("columns has duplicates")
    if cols.min() < 0 or cols.max() >= n_features:
        raise ValueError(f"columns must be in [0, {n_features}), got min {cols.min()} max {cols.max()}")
    return cols


def fit_subset(
    ans_tr: np.ndarray,
    oth_tr: np.ndarray | None,
    y_tr: np.ndarray,
    columns: Iterable[int],
    mode: str,
    *, C: float = 1.0,
    seed: int = 0,
) -> SubsetClassifier:
    """Refit on a subset of columns: standardise with the training matrix's mean/std (floor 1e-12),
    L2 logistic regression (lbfgs, max_iter 2000), trained in the same mode as the probe."""
    _check_mode(mode)
    n, p = _rows(ans_tr)
    cols = _columns(columns, p)
    oth_sub = None if (mode == "1-vs-1" or oth_tr is None) else flatten(oth_tr)[:, cols]
    X, y = training_set(flatten(ans_tr)[:, cols], oth_sub, y_tr, mode)
    mean = X.mean(axis=0, dtype=np.float64)
    std = np.maximum(X.std(axis=0, dtype=np.float64), 1e-12)
    model = LogisticRegression(C=C, l1_ratio=0.0, solver="lbfgs", max_iter=2000, random_state=seed)
    model.fit((X - mean) / std, y)
    return SubsetClassifier(cols, mean, std, model)


def evaluate_subset(
    ans_tr: np.ndarray, oth_tr: np.ndarray | None, y_tr: np.ndarray, ans_te: np.ndarray, y_te: np.ndarray,
    *, columns: Iterable[int], mode: str, C: float = 1.0, seed: int = 0,
) -> dict[str, float]:
    """Test accuracy/AUROC of :func:`fit_subset` on the given columns (the H-neuron set or a random one)."""
    clf = fit_subset(ans_tr, oth_tr, y_tr, columns, mode, C=C, seed=seed)
    return evaluate(y_te, clf.predict_proba_ans(ans_te))


def random_columns(n_features: int, k: int, draws: int, seed: int = 0,
                   exclude: Iterable[int] | None = None) -> list[np.ndarray]:
    """``draws`` random sets of k distinct columns out of ``n_features`` (draw d uses
    ``default_rng(seed + d)``), never drawing the columns in ``exclude``."""
    pool = np.setdiff1d(np.arange(n_features), np.asarray([] if exclude is None else list(exclude), dtype=np.int64))
    if not 0 < k <= pool.size:
        raise ValueError(f"k must be in [1, {pool.size}] (columns available), got {k}")
    return [np.random.default_rng(seed + d).choice(pool, size=k, replace=False) for d in range(draws)]


def random_classifiers(
    ans_tr: np.ndarray, oth_tr: np.ndarray | None, y_tr: np.ndarray, k: int, draws: int, *, mode: str,
    C: float = 1.0, seed: int = 0, exclude: Iterable[int] | None = None,
) -> list[SubsetClassifier]:
    """The subset classifier refit on each of :func:`random_columns`' sets (the random-neuron baseline)."""
    _, p = _rows(ans_tr)
    return [fit_subset(ans_tr, oth_tr, y_tr, cols, mode, C=C, seed=seed)
            for cols in random_columns(p, k, draws, seed, exclude)]


def random_baseline(
    ans_tr: np.ndarray, oth_tr: np.ndarray | None, y_tr: np.ndarray, ans_te: np.ndarray, y_te: np.ndarray,
    *, k: int, draws: int, mode: str, C: float = 1.0, seed: int = 0, exclude: Iterable[int] | None = None,
) -> pd.DataFrame:
    """Test metrics of :func:`random_classifiers`: one row per draw (draw, accuracy, auroc)."""
    clfs = random_classifiers(ans_tr, oth_tr, y_tr, k, draws, mode=mode, C=C, seed=seed, exclude=exclude)
    return evaluate_classifiers(clfs, ans_te, y_te)


def evaluate_classifiers(clfs: list[SubsetClassifier], ans: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    """One row per classifier (draw, accuracy, auroc) on answer features ``ans`` with labels ``y``."""
    rows = [{"draw": d, **evaluate(y, c.predict_proba_ans(ans))} for d, c in enumerate(clfs)]
    return pd.DataFrame(rows, columns=["draw", "accuracy", "auroc"])


def save_classifiers(path: str | Path, clfs: dict[str, SubsetClassifier], meta: dict) -> None:
    """Write named subset classifiers (columns, standardisation, weights) and a JSON ``meta`` to one
    ``.npz``, so a later notebook applies exactly these classifiers without refitting."""
    import json

    arrays: dict[str, np.ndarray] = {"__meta__": np.array(json.dumps({**meta, "names": list(clfs)}))}
    for name, c in clfs.items():
        if "/" in name:
            raise ValueError(f"classifier names may not contain '/': {name!r}")
        arrays.update({f"{name}/columns": c.columns, f"{name}/mean": c.mean, f"{name}/std": c.std,
                       f"{name}/coef": c.model.coef_, f"{name}/intercept": c.model.intercept_,
                       f"{name}/classes": c.model.classes_})
    np.savez(path, **arrays)


def load_classifiers(path: str | Path) -> tuple[dict[str, SubsetClassifier], dict]:
    """Read :func:`save_classifiers`' file: ({name: classifier}, meta). Predictions equal the saved
    classifiers' exactly (same weights, same standardisation)."""
    import json

    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["__meta__"]))
        out = {}
        for name in meta["names"]:
            model = LogisticRegression()
            model.coef_, model.intercept_ = z[f"{name}/coef"], z[f"{name}/intercept"]
            model.classes_ = z[f"{name}/classes"]
            model.n_features_in_ = model.coef_.shape[1]
            out[name] = SubsetClassifier(z[f"{name}/columns"], z[f"{name}/mean"], z[f"{name}/std"], model)
    return out, meta


# --------------------------------------------------------------------------- stability


def jaccard(a: Iterable[int], b: Iterable[int]) -> float:
    """|a ∩ b| / |a ∪ b| of two index sets; 1.0 when both are empty."""
    a, b = {int(i) for i in a}, {int(i) for i in b}
    return 1.0 if not (a or b) else len(a & b) / len(a | b)


def bootstrap_sets(
    ans_tr: np.ndarray, oth_tr: np.ndarray | None, y_tr: np.ndarray, C: float, mode: str,
    *, n_boot: int, seed: int, tol: float = L1_TOL,
) -> list[np.ndarray]:
    """The positive set (flat neuron indices) of the L1 probe refit on each of ``n_boot`` bootstrap
    resamples of the training examples (an example's ans and oth rows stay together; resamples with a
    single class are redrawn)."""
    _check_mode(mode)
    n, _ = _rows(ans_tr)
    y_tr = _labels(y_tr, n)
    if y_tr.min() == y_tr.max():
        raise ValueError("y_tr has a single class")
    if mode == "3-vs-1" and (oth_tr is None or np.shape(oth_tr) != np.shape(ans_tr)):
        raise ValueError(f"mode '3-vs-1' needs oth with the shape of ans {np.shape(ans_tr)}, "
                         f"got {None if oth_tr is None else np.shape(oth_tr)}")
    ans = np.asarray(ans_tr).reshape(n, -1)  # views in the stored dtype; cast once, into X
    oth = None if mode == "1-vs-1" else np.asarray(oth_tr).reshape(n, -1)
    X = np.empty((n if oth is None else 2 * n, ans.shape[1]), dtype=np.float32)  # reused by every fit
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        while y_tr[idx].min() == y_tr[idx].max():
            idx = rng.integers(0, n, n)
        X[:n] = ans[idx]
        if oth is not None:
            X[n:] = oth[idx]
        y = y_tr[idx] if oth is None else np.concatenate([y_tr[idx], np.zeros(n, dtype=np.int64)])
        out.append(np.flatnonzero(fit_l1(X, y, C, seed, tol=tol).coef_[0] > 0))
    return out


def stability(
    ans_tr: np.ndarray, oth_tr: np.ndarray | None, y_tr: np.ndarray, C: float, mode: str,
    *, n_boot: int, seed: int, reference: Iterable[int], tol: float = L1_TOL,
) -> np.ndarray:
    """Jaccard overlap of ``reference`` with the positive set of each bootstrap refit of
    :func:`bootstrap_sets`."""
    ref = {int(i) for i in reference}
    sets = bootstrap_sets(ans_tr, oth_tr, y_tr, C, mode, n_boot=n_boot, seed=seed, tol=tol)
    return np.array([jaccard(ref, s) for s in sets])


def stability_selected(sets: Sequence[Iterable[int]], *, min_share: float = 0.5) -> np.ndarray:
    """The neurons (sorted flat indices) chosen in at least ``min_share`` of the bootstrap refits' positive
    ``sets`` — a set that does not hang on one sample of training questions."""
    if not sets:
        raise ValueError("stability_selected needs at least one bootstrap set")
    if not 0 < min_share <= 1:
        raise ValueError(f"min_share must be in (0, 1], got {min_share}")
    counts: dict[int, int] = {}
    for s in sets:
        for i in {int(x) for x in s}:
            counts[i] = counts.get(i, 0) + 1
    need = math.ceil(min_share * len(sets) - 1e-9)
    return np.array(sorted(i for i, c in counts.items() if c >= need), dtype=np.int64)


def length_check(
    lengths_te: np.ndarray, y_te: np.ndarray, prob_te: np.ndarray, n_strata: int = 4,
    threshold: float = THRESHOLD,
) -> dict[str, object]:
    """Is the probe just detecting response length?

    Returns ``length_auroc`` (raw AUROC of length as a score for y=1; 0.5 = uninformative, <0.5 =
    shorter responses hallucinate more), ``strata`` (per length-quantile stratum: stratum,
    length_min, length_max, n, n_hallucinated, n_faithful, majority_accuracy, accuracy, auroc),
    ``stratified_accuracy`` (n-weighted mean of the stratum accuracies; equals the overall accuracy
    by construction, compare it with the n-weighted ``majority_accuracy``) and
    ``stratified_auroc`` (n-weighted mean of within-stratum AUROCs over strata with both classes).
    Equal lengths may merge quantile bins, so there can be fewer than n_strata strata.
    """
    lengths = np.asarray(lengths_te, dtype=np.float64)
    prob = np.asarray(prob_te, dtype=np.float64)
    y = _labels(y_te, len(lengths))
    if len(prob) != len(y):
        raise ValueError(f"prob_te has {len(prob)} entries, y_te has {len(y)}")
    bins = pd.qcut(lengths, n_strata, labels=False, duplicates="drop")
    rows = []
    for s in np.unique(bins):
        m = bins == s
        ev = evaluate(y[m], prob[m], threshold)
        n_h = int(y[m].sum())
        rows.append({"stratum": int(s), "length_min": lengths[m].min(), "length_max": lengths[m].max(),
                     "n": int(m.sum()), "n_hallucinated": n_h, "n_faithful": int(m.sum()) - n_h,
                     "majority_accuracy": max(n_h, int(m.sum()) - n_h) / m.sum(), **ev})
    strata = pd.DataFrame(rows)
    w = strata["n"] / strata["n"].sum()
    ok = strata["auroc"].notna()
    return {
        "length_auroc": _auroc(y, lengths),
        "strata": strata,
        "stratified_accuracy": float((w * strata["accuracy"]).sum()),
        "stratified_majority_accuracy": float((w * strata["majority_accuracy"]).sum()),
        "stratified_auroc": (float(np.average(strata.loc[ok, "auroc"], weights=strata.loc[ok, "n"]))
                             if ok.any() else float("nan")),
    }


# --------------------------------------------------------------------------- notebook 03's steps


def validation_split(y: np.ndarray, train: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split the training examples (boolean mask ``train``) once more, per class and seeded: the fit
    indices and the validation indices (``val_fraction`` of each class, at least one) used to choose C."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    tr_idx = np.flatnonzero(train)
    val = np.concatenate([rng.permutation(tr_idx[y[tr_idx] == c])[: max(1, round(val_fraction * (y[tr_idx] == c).sum()))]
                          for c in (0, 1)])
    return np.setdiff1d(tr_idx, val), np.sort(val)


def test_table(y: np.ndarray, classifiers: dict[str, tuple[int, np.ndarray]], random_draws: pd.DataFrame, k: int,
               n_boot: int, *, seed: int) -> pd.DataFrame:
    """Rows (classifier, neurons, accuracy, auroc with 95% bootstrap intervals over test questions) for
    each named (neurons, test scores), then one row for the random-neuron draws (their mean; the interval
    is the 2.5–97.5% range of the draws)."""
    from hneuron_utils.stats import bootstrap_ci

    rows = []
    for name, (n, p) in classifiers.items():
        r: dict[str, object] = {"classifier": name, "neurons": int(n)}
        for m in ("accuracy", "auroc"):
            pt, lo, hi = bootstrap_ci(y, p, m, n_boot, seed)
            r.update({m: pt, f"{m}_lo": lo, f"{m}_hi": hi})
        rows.append(r)
    r = {"classifier": f"random neurons (mean of {len(random_draws)} draws; interval = 2.5–97.5% of draws)", "neurons": k}
    for m in ("accuracy", "auroc"):
        r.update({m: random_draws[m].mean(), f"{m}_lo": random_draws[m].quantile(0.025),
                  f"{m}_hi": random_draws[m].quantile(0.975)})
    rows.append(r)
    y = np.asarray(y)
    return pd.DataFrame(rows).assign(n_per_class=int(min((y == 0).sum(), (y == 1).sum())))


def stability_table(boot: np.ndarray, grid: "GridResult", reference: Iterable[int]) -> pd.DataFrame:
    """Jaccard of the H-neuron set with each bootstrap refit (same C) and with each grid fit (80% split)."""
    rows = [{"comparison": f"bootstrap refit {i + 1} (same C)", "jaccard": j} for i, j in enumerate(boot)]
    rows += [{"comparison": f"grid fit at C = {c:g} (80% split)", "jaccard": jaccard(reference, grid.positive(c))}
             for c in grid.table.C]
    return pd.DataFrame(rows)


def fit_h_probe(ans_tr: np.ndarray, oth_tr: np.ndarray | None, y_tr: np.ndarray, C: float, mode: str, *, seed: int,
                tol: float = L1_TOL) -> LogisticRegression:
    """The L1 probe on all training examples at ``C`` (its positive coefficients are the H-neurons)."""
    X, y = training_set(ans_tr, oth_tr, y_tr, mode)
    return fit_l1(X, y, C, seed, tol=tol)
