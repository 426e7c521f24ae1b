import numpy as np
import pytest

from hneuron_utils import stats as S
from hneuron_utils.probes import baselines as B
from hneuron_utils.probes.probe import _auroc


def test_matched_auroc_ignores_cross_length_pairs():
    # length alone separates the classes; within each length the score is uninformative
    y = np.array([1, 1, 0, 0, 1, 0])
    length = np.array([5, 5, 2, 2, 3, 3])
    assert _auroc(y, length) > 0.9
    auc, pairs = B.matched_auroc(y, length.astype(float), length)
    assert pairs == 1 and auc == 0.5  # the one same-length pair is a tie
    score = np.array([0.9, 0.8, 0.1, 0.2, 0.7, 0.3])
    assert B.matched_auroc(y, score, length) == (1.0, 1)


def test_compare_paired_differences():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 60)
    good = y + rng.normal(0, 0.5, len(y))
    noise = rng.normal(0, 1, len(y))
    m, d = B.compare(y, {"good": good, "noise": noise}, "good", 300, 0)
    assert set(m.method) == {"good", "noise"} and (m.n_per_class == 60).all()
    row = d.set_index("method").loc["noise"]
    assert row.auroc_diff_lo > 0  # good beats noise, by a paired interval
    assert S.verdict(row.auroc_diff_lo, row.auroc_diff_hi, "H-neurons", "noise") == "H-neurons beat noise"
    m2, d2 = B.compare(y, {"a": good, "b": good + 1e-9 * noise}, "a", 300, 0)
    r2 = d2.iloc[0]
    assert r2.auroc_diff_lo <= 0 <= r2.auroc_diff_hi
    assert "do not beat" in S.verdict(r2.auroc_diff_lo, r2.auroc_diff_hi, "a", "b")


def test_residual_probe_picks_the_informative_layer():
    rng = np.random.default_rng(1)
    n, L, d = 120, 4, 8
    y = np.repeat([0, 1], n // 2)
    resid = rng.normal(size=(n, L, d))
    resid[:, 2, 0] += 2.0 * y  # only layer 2 carries the label
    idx = rng.permutation(n)
    tr, te = idx[:80], idx[80:]
    fit, val = tr[:60], tr[60:]
    layer, p, table = B.residual_probe(resid, y, fit, val, tr, test_idx=te)
    assert layer == 2 and len(table) == L and _auroc(y[te], p) > 0.85


def test_scalar_scores_learn_the_sign():
    y = np.repeat([0, 1], 20)
    x = -np.arange(40.0)  # lower = hallucinated
    p = B.scalar_scores(x, y, x)
    assert _auroc(y, p) == 1.0 and (p[y == 1] > 0.5).mean() > 0.9


def test_transfer_baselines_apply_unchanged_and_skip_one_class_sets():
    rng = np.random.default_rng(2)
    n, L, d = 80, 3, 4
    y = np.repeat([0, 1], n // 2)
    sig = {"resid": rng.normal(size=(n, L, d)), "confidence": rng.normal(size=(n, 3)),
           "answer_tokens": rng.integers(1, 4, n)}
    sig["confidence"][:, 0] -= 2 * y  # lower mean log-probability when hallucinated
    fitted = B.TransferBaselines(sig["resid"], sig["confidence"], sig["answer_tokens"], y, layer=1)
    s = fitted.scores(sig)
    assert set(s) >= {"answer length (tokens)", "mean token log-probability", "residual-stream probe (layer 1)"}
    assert _auroc(y, s["mean token log-probability"]) > 0.8

    class Clf:
        def __init__(self, w):
            self.w = w

        def __call__(self, X):
            return 1 / (1 + np.exp(-X @ self.w))

    ans = np.c_[y + rng.normal(0, 0.5, n), rng.normal(size=n)]
    clfs = {"h_neurons": Clf(np.array([1.0, 0.0])), "random_0": Clf(np.array([0.0, 1.0])),
            "random_1": Clf(np.array([0.0, -1.0]))}
    one = np.zeros(n // 2, int)
    sets = {"two": (ans, y, sig), "one": (ans[: n // 2], one, {k: v[: n // 2] for k, v in sig.items()})}
    m, dd = B.transfer_table(clfs, fitted, sets, 100, 0)
    assert set(m[m.set == "two"].method) >= {"H-neurons", "random neurons (mean of draws)", "answer length (tokens)"}
    assert m[m.set == "one"].method.str.startswith("(not scored").all()
    assert set(dd.set) == {"two"}


def test_wilson_interval_never_collapses_and_matches_known_values():
    lo, hi = S.wilson_interval(0, 50)
    assert lo == 0.0 and 0.07 < hi < 0.072  # 0 of 50: [0, 7.1%], not "[0, 0]"
    lo, hi = S.wilson_interval(50, 50)
    assert hi == 1.0 and 0.928 < lo < 0.93
    lo, hi = S.wilson_interval(3, 10)  # the textbook value: 0.108 .. 0.603
    assert abs(lo - 0.1078) < 1e-3 and abs(hi - 0.6032) < 1e-3
    with pytest.raises(ValueError):
        S.wilson_interval(3, 0)
