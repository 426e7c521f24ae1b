"""Identification of an H-neuron set and its scoring against the baselines, in one call.

The same procedure for any set of CETT features — so that two versions of the features (for example two
answer-span rules) are compared by identical steps: the C grid on a validation split of the training
questions, C chosen by held-out accuracy, the L1 probe refit on all training questions, its positive
neurons refit alone, and that classifier scored on the test questions beside random neurons, answer
length, the model's confidence and a residual-stream probe, with one paired bootstrap.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd


def identify_and_score(ans: np.ndarray, oth: np.ndarray, y: np.ndarray, *, train: np.ndarray, test: np.ndarray,
                       fit_idx: np.ndarray, val_idx: np.ndarray, resid: np.ndarray, confidence: np.ndarray,
                       answer_tokens: np.ndarray, Cs: Sequence[float], mode: str, tol: float, subset_C: float,
                       random_draws: int, n_boot: int, seed: int, n_layers: int, d_ff: int) -> dict[str, Any]:
    """One row: the held-out-rule C, the H-neuron set and its test AUROC and length-controlled AUROC with
    intervals, the mean of ``random_draws`` random sets of the same size, and the best non-H-neuron method
    (random neurons, answer length, confidence, residual-stream probe) with the paired difference
    H-neurons − best and the words its interval chooses.

    ``ans``/``oth``: [N, L*F] answer- and other-token features; ``y`` 1 = hallucinated; ``train``/``test``
    boolean masks; ``fit_idx``/``val_idx`` row numbers of the training rows that fit and choose C;
    ``resid`` [N, L, d_model], ``confidence`` [N, 3] and ``answer_tokens`` [N]: the baselines' signals.
    The set itself is returned under ``columns`` (flat indices)."""
    from hneuron_utils.probes import baselines, probe
    from hneuron_utils.stats import verdict

    grid = probe.c_grid(ans[fit_idx], oth[fit_idx], y[fit_idx], ans_val=ans[val_idx], y_val=y[val_idx], Cs=Cs,
                        mode=mode, seed=seed, n_layers=n_layers, d_ff=d_ff, tol=tol)
    C = float(probe.select_c(grid.table, "held_out")["C"])
    clf = probe.fit_h_probe(ans[train], oth[train], y[train], C=C, mode=mode, seed=seed, tol=tol)
    cols = np.flatnonzero(clf.coef_[0] > 0)
    if len(cols) == 0:
        raise ValueError(f"the L1 probe at C = {C:g} kept no positive neuron: no H-neuron set to score")
    h_clf = probe.fit_subset(ans[train], oth[train], y[train], columns=cols, mode=mode, C=subset_C, seed=seed)
    rand = probe.random_classifiers(ans[train], oth[train], y[train], k=len(cols), draws=random_draws, mode=mode,
                                    C=subset_C, seed=seed, exclude=cols)
    layer, _, _ = baselines.residual_probe(resid, y, fit_idx, val_idx=val_idx, train_idx=np.flatnonzero(train),
                                           test_idx=np.flatnonzero(test), seed=seed)
    fitted = baselines.TransferBaselines(resid[train], confidence[train], answer_tokens[train], y_tr=y[train],
                                         layer=layer, seed=seed)
    ref = "H-neurons"
    scores = {ref: h_clf.predict_proba_ans(ans[test]),
              "random neurons (mean of draws)": np.vstack([c.predict_proba_ans(ans[test]) for c in rand]),
              **fitted.scores({"answer_tokens": answer_tokens[test], "confidence": confidence[test],
                               "resid": resid[test]})}
    metrics, diffs = baselines.compare(y[test], scores, ref, n_boot=n_boot, seed=seed, strata=answer_tokens[test])
    m = metrics.set_index("method")
    best = metrics[metrics.method != ref].sort_values("auroc").iloc[-1]
    d = diffs.set_index("method").loc[best.method]
    yt = y[test]
    return {"C": C, "H-neurons": int(len(cols)), "test per class": int(min((yt == 0).sum(), (yt == 1).sum())),
            "H AUROC": m.loc[ref, "auroc"], "H AUROC lo": m.loc[ref, "auroc_lo"], "H AUROC hi": m.loc[ref, "auroc_hi"],
            "H length-controlled AUROC": m.loc[ref, "matched_auroc"],
            "H length-controlled lo": m.loc[ref, "matched_auroc_lo"],
            "H length-controlled hi": m.loc[ref, "matched_auroc_hi"],
            "length-matched pairs": int(m.loc[ref, "matched_pairs"]),
            "random AUROC": m.loc["random neurons (mean of draws)", "auroc"],
            "answer length AUROC": m.loc["answer length (tokens)", "auroc"],
            "answer length AUROC lo": m.loc["answer length (tokens)", "auroc_lo"],
            "answer length AUROC hi": m.loc["answer length (tokens)", "auroc_hi"],
            "mean answer tokens, hallucinated": float(np.mean(answer_tokens[y == 1])),
            "mean answer tokens, faithful": float(np.mean(answer_tokens[y == 0])),
            "best baseline": best.method, "best baseline AUROC": best.auroc,
            "best baseline AUROC lo": best.auroc_lo, "best baseline AUROC hi": best.auroc_hi,
            "H minus best AUROC": d.auroc_diff, "H minus best lo": d.auroc_diff_lo, "H minus best hi": d.auroc_diff_hi,
            "H vs best": verdict(d.auroc_diff_lo, d.auroc_diff_hi, "H-neurons", best.method),
            "columns": cols}


def span_rules_table(rows: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """The rows of :func:`identify_and_score`, one per answer-span rule, side by side (without the sets),
    with the Jaccard overlap of each rule's set with the first rule's."""
    from hneuron_utils.probes.probe import jaccard

    first = next(iter(rows.values()))["columns"]
    out = []
    for rule, r in rows.items():
        out.append({"span rule": rule, **{k: v for k, v in r.items() if k != "columns"},
                    "jaccard with the first rule's set": jaccard(first, r["columns"])})
    return pd.DataFrame(out)
