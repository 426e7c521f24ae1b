"""Baselines for the H-neuron classifier, scored on the same test examples.

A reviewer's first questions about a hallucination detector built from a few neurons: does it beat
what is cheaper or already there?

- **length**: the number of answer tokens (hallucinated answers are often longer);
- **the model's own confidence**, from the teacher-forced pass that already computes the CETT: the
  mean and the minimum log-probability of the answer tokens, and the mean predictive entropy;
- **a residual-stream probe**: each layer's hidden state averaged over the answer tokens, an L2
  logistic regression on one layer, the layer chosen on the validation split;
- **random neurons** and **the full L1 probe** (notebook 03 already has these).

Every scalar baseline is turned into a classifier the same way (a logistic regression on the
standardised scalar, fitted on the training examples), so its accuracy at threshold 0.5 is as fair as
the H-neuron classifier's; its AUROC does not depend on that fit beyond the sign. Differences between
two classifiers are paired: one bootstrap over test questions scores both on the same resample. The
**length-controlled** AUROC compares only test pairs (hallucinated, faithful) with the same number of
answer tokens, so no score can win by reading length.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from hneuron_utils.probes.probe import _auroc, evaluate

CONFIDENCE_NAMES = {"logprob_mean": "mean token log-probability", "logprob_min": "minimum token log-probability",
                    "entropy_mean": "mean predictive entropy"}


class Standardised:
    """A logistic regression on standardised columns (mean/std of the training rows)."""

    def __init__(self, X: np.ndarray, y: np.ndarray, C: float = 1.0, seed: int = 0):
        X = _2d(X)
        self.mean = X.mean(0)
        self.std = np.maximum(X.std(0), 1e-12)
        self.model = LogisticRegression(C=C, max_iter=5000, random_state=seed).fit((X - self.mean) / self.std, y)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(hallucinated) per row."""
        return self.model.predict_proba((_2d(X) - self.mean) / self.std)[:, 1]


def _2d(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    return X[:, None] if X.ndim == 1 else X.reshape(len(X), -1)


def scalar_scores(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, seed: int = 0) -> np.ndarray:
    """Test P(hallucinated) from a :class:`Standardised` fit on training scalars (or a few columns)."""
    return Standardised(x_tr, y_tr, seed=seed).predict_proba(x_te)


def residual_probe(resid: np.ndarray, y: np.ndarray, fit_idx: np.ndarray, val_idx: np.ndarray,
                   train_idx: np.ndarray, *, test_idx: np.ndarray, C: float = 0.1,
                   seed: int = 0) -> tuple[int, np.ndarray, pd.DataFrame]:
    """The residual-stream probe: per layer, fit on ``fit_idx`` and score validation AUROC on ``val_idx``;
    the best layer (ties → the earlier one) is refitted on all of ``train_idx`` and scored on ``test_idx``.
    ``resid`` is [N, n_layers, d_model]. Returns (layer, test scores, per-layer validation table)."""
    rows = []
    for layer in range(resid.shape[1]):
        clf = Standardised(resid[fit_idx, layer], y[fit_idx], C=C, seed=seed)
        rows.append({"layer": layer, "val_auroc": _auroc(y[val_idx], clf.predict_proba(resid[val_idx, layer]))})
    table = pd.DataFrame(rows)
    best = int(table.val_auroc.fillna(-1).to_numpy().argmax())
    clf = Standardised(resid[train_idx, best], y[train_idx], C=C, seed=seed)
    return best, clf.predict_proba(resid[test_idx, best]), table


def matched_auroc(y: np.ndarray, score: np.ndarray, strata: np.ndarray) -> tuple[float, int]:
    """AUROC over (hallucinated, faithful) pairs in the same stratum only (ties count ½), and the number
    of such pairs. With strata = answer-token counts this is a length-controlled AUROC."""
    y, score, strata = np.asarray(y), np.asarray(score, dtype=np.float64), np.asarray(strata)
    wins, pairs = 0.0, 0
    for s in np.unique(strata):
        m = strata == s
        h, f = score[m & (y == 1)], score[m & (y == 0)]
        if len(h) and len(f):
            d = h[:, None] - f[None, :]
            wins += float((d > 0).sum() + 0.5 * (d == 0).sum())
            pairs += d.size
    return (wins / pairs if pairs else float("nan")), pairs


def _boot_indices(y: np.ndarray, n_boot: int, seed: int) -> list[np.ndarray]:
    """Bootstrap resamples of test questions, stratified by class (each keeps both classes)."""
    rng = np.random.default_rng(seed)
    cls = [np.flatnonzero(y == c) for c in (0, 1)]
    return [np.concatenate([rng.choice(c, len(c)) for c in cls]) for _ in range(n_boot)]


MetricFn = Callable[[np.ndarray, np.ndarray, np.ndarray], float]


def _per_draw(fn: MetricFn) -> MetricFn:
    """A metric of a [draws, N] score array: the mean over draws (e.g. the random-neuron classifiers)."""
    return lambda y, p, idx: float(np.mean([fn(y, row, idx) for row in p])) if np.ndim(p) == 2 else fn(y, p, idx)


def _metric_fns(strata: np.ndarray | None) -> dict[str, MetricFn]:
    fns: dict[str, MetricFn] = {
        "accuracy": lambda y, p, idx: evaluate(y[idx], p[idx])["accuracy"],
        "auroc": lambda y, p, idx: _auroc(y[idx], p[idx]),
    }
    if strata is not None:
        fns["matched_auroc"] = lambda y, p, idx: matched_auroc(y[idx], p[idx], strata[idx])[0]
    return {m: _per_draw(f) for m, f in fns.items()}


def compare(y: np.ndarray, scores: Mapping[str, np.ndarray], reference: str, n_boot: int, seed: int,
            *, strata: np.ndarray | None = None, level: float = 0.95) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every classifier's metrics with percentile intervals, and ``reference`` minus each other one with
    paired intervals, from one stratified bootstrap over test questions shared by all classifiers.
    A [draws, N] score array (several random-neuron classifiers) counts as one method: its metric is the
    mean over draws, in the full sample and in every resample.

    Returns (metrics: method, accuracy[_lo/_hi], auroc[_lo/_hi], matched_auroc[_lo/_hi], matched_pairs,
    n_per_class; differences: method, <metric>_diff[_lo/_hi] for reference − method)."""
    import warnings

    y = np.asarray(y)
    fns = _metric_fns(strata)
    full = np.arange(len(y))
    warnings.filterwarnings("ignore", message="All-NaN slice", category=RuntimeWarning)  # no same-length pair
    boots = _boot_indices(y, n_boot, seed)
    q = [(1 - level) / 2, (1 + level) / 2]
    vals = {name: {m: np.array([f(y, np.asarray(p), b) for b in boots]) for m, f in fns.items()}
            for name, p in scores.items()}
    n_pc = int(min((y == 0).sum(), (y == 1).sum()))
    rows, diffs = [], []
    for name, p in scores.items():
        p = np.asarray(p)
        r = {"method": name, "n_per_class": n_pc}
        for m, f in fns.items():
            lo, hi = np.nanquantile(vals[name][m], q)
            r.update({m: f(y, p, full), f"{m}_lo": lo, f"{m}_hi": hi})
        if strata is not None:
            r["matched_pairs"] = matched_auroc(y, p if p.ndim == 1 else p[0], strata)[1]
        rows.append(r)
        if name != reference:
            d = {"method": name}
            for m, f in fns.items():
                dv = vals[reference][m] - vals[name][m]
                lo, hi = np.nanquantile(dv, q)
                d.update({f"{m}_diff": f(y, np.asarray(scores[reference]), full) - f(y, p, full),
                          f"{m}_diff_lo": lo, f"{m}_diff_hi": hi})
            diffs.append(d)
    return pd.DataFrame(rows), pd.DataFrame(diffs)


class TransferBaselines:
    """The baselines of notebook 03, fitted once on the TriviaQA training questions, to be applied
    unchanged (like the H-neuron classifier) to other sets in notebook 04: answer length, the three
    confidence signals and their combination, and the residual-stream probe at 03's chosen layer."""

    def __init__(self, resid_tr: np.ndarray, conf_tr: np.ndarray, n_ans_tr: np.ndarray, y_tr: np.ndarray,
                 layer: int, *, seed: int = 0, resid_C: float = 0.1):
        self.layer = int(layer)
        self.fits: dict[str, tuple[Standardised, Callable[[dict], np.ndarray]]] = {
            "answer length (tokens)": (Standardised(n_ans_tr, y_tr, seed=seed), lambda s: s["answer_tokens"]),
            **{name: (Standardised(conf_tr[:, j], y_tr, seed=seed), lambda s, j=j: s["confidence"][:, j])
               for j, name in enumerate(CONFIDENCE_NAMES.values())},
            "confidence (all three)": (Standardised(conf_tr, y_tr, seed=seed), lambda s: s["confidence"]),
            f"residual-stream probe (layer {self.layer})": (
                Standardised(resid_tr[:, self.layer], y_tr, C=resid_C, seed=seed),
                lambda s: s["resid"][:, self.layer]),
        }

    def scores(self, signals: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """P(hallucinated) of every baseline for one set's signals (``answer_tokens`` [N], ``confidence``
        [N, 3], ``resid`` [N, L, d])."""
        return {name: clf.predict_proba(get(signals)) for name, (clf, get) in self.fits.items()}


def transfer_table(clfs: Mapping[str, object], fitted: TransferBaselines,
                   sets: Mapping[str, tuple[np.ndarray, np.ndarray, Mapping[str, np.ndarray]]], n_boot: int,
                   seed: int, *, min_per_class: int = 2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For every set with at least ``min_per_class`` examples of each class: the H-neuron classifier,
    the random-neuron classifiers (mean of draws) and every baseline, with intervals and paired
    differences (H-neurons minus baseline, length-controlled too). ``sets`` maps a label to
    (answer CETT features [N, L*F], labels, signals). Sets below the minimum are listed with n only."""
    rand = sorted((k for k in clfs if k.startswith("random_")), key=lambda k: int(k.split("_")[1]))
    metrics, diffs = [], []
    for label, (ans, y, sig) in sets.items():
        y = np.asarray(y)
        if min((y == 0).sum(), (y == 1).sum()) < min_per_class:
            metrics.append(pd.DataFrame([{"set": label, "method": "(not scored: a class has fewer than "
                                          f"{min_per_class} examples)", "n_per_class": int(min((y == 0).sum(), (y == 1).sum()))}]))
            continue
        scores = {"H-neurons": clfs["h_neurons"](ans),
                  "random neurons (mean of draws)": np.vstack([clfs[k](ans) for k in rand]),
                  **fitted.scores(sig)}
        m, d = compare(y, scores, "H-neurons", n_boot, seed, strata=np.asarray(sig["answer_tokens"]))
        metrics.append(m.assign(set=label))
        diffs.append(d.assign(set=label))
    cols = lambda df: df[["set"] + [c for c in df.columns if c != "set"]]  # noqa: E731
    return (cols(pd.concat(metrics, ignore_index=True)) if metrics else pd.DataFrame(),
            cols(pd.concat(diffs, ignore_index=True)) if diffs else pd.DataFrame())


def headline_row(cfg: object, n_train: int, n_test: int, C: float, k: int, *, n_features: int, clf: object,
                 test: pd.DataFrame, random_draws: pd.DataFrame, length_auroc: float, metrics: pd.DataFrame,
                 diffs: pd.DataFrame, other: tuple[str, float, int, str],
                 stability: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Notebook 03's headline: the H-neurons (both C rules), random neurons, and the best baseline with
    the paired difference and its words. ``other`` = (other rule, its C, its set size, its method name).
    ``stability``: {"jaccards": the bootstrap refits' Jaccard with the set, "stable set": the size of the
    stability-selected set, "stable method": its row name in ``metrics`` (absent when the set is empty)}."""
    from hneuron_utils.stats import verdict

    h, r = test.iloc[1], test.iloc[2]
    row = {"model": cfg.model, "train per class": n_train, "test per class": n_test, "mode": cfg.probe_mode, "C": C,
           "C rule": cfg.c_rule, "H-neurons": k, "permille": 1000 * k / n_features,
           "H accuracy": h.accuracy, "H accuracy lo": h.accuracy_lo, "H accuracy hi": h.accuracy_hi,
           "H AUROC": h.auroc, "H AUROC lo": h.auroc_lo, "H AUROC hi": h.auroc_hi,
           "random accuracy": r.accuracy, "random accuracy sd": random_draws.accuracy.std(), "random AUROC": r.auroc,
           "random draws": len(random_draws), "length AUROC": length_auroc,
           "fit converged": bool(clf.converged), "fit iterations": clf.n_iter, "probe tol": cfg.probe_tol}
    m = metrics.set_index("method")
    rule, c_other, k_other, name_other = other
    row.update({"other rule": rule, "other C": c_other, "other H-neurons": k_other,
                "other AUROC": m.loc[name_other, "auroc"], "other AUROC lo": m.loc[name_other, "auroc_lo"],
                "other AUROC hi": m.loc[name_other, "auroc_hi"]})
    if stability is not None:
        j = np.asarray(stability["jaccards"], dtype=float)
        name = stability["stable method"]
        row.update({"bootstrap refits": len(j), "bootstrap Jaccard median": float(np.median(j)) if len(j) else np.nan,
                    "bootstrap Jaccard min": float(j.min()) if len(j) else np.nan,
                    "bootstrap Jaccard max": float(j.max()) if len(j) else np.nan,
                    "stable H-neurons": int(stability["stable set"]),
                    "stable AUROC": m.loc[name, "auroc"] if name in m.index else np.nan,
                    "stable AUROC lo": m.loc[name, "auroc_lo"] if name in m.index else np.nan,
                    "stable AUROC hi": m.loc[name, "auroc_hi"] if name in m.index else np.nan})
    best = metrics[~metrics.method.str.startswith("H-neurons")].sort_values("auroc").iloc[-1]
    bd = diffs.set_index("method").loc[best.method]
    row.update({"best baseline": best.method, "best baseline AUROC": best.auroc, "best baseline AUROC lo": best.auroc_lo,
                "best baseline AUROC hi": best.auroc_hi, "H minus best AUROC": bd.auroc_diff,
                "H minus best lo": bd.auroc_diff_lo, "H minus best hi": bd.auroc_diff_hi,
                "H vs best": verdict(bd.auroc_diff_lo, bd.auroc_diff_hi, "H-neurons", best.method)})
    return pd.DataFrame([row])


def feature_counts(fitted: TransferBaselines, d_model: int) -> dict[str, int]:
    """How many inputs each fitted baseline reads (for the baseline table's ``neurons_or_features``)."""
    return {name: (d_model if name.startswith("residual") else 3 if name.startswith("confidence (all") else 1)
            for name in fitted.fits}
