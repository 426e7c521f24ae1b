"""The statistics module: the workbook's one κ and the bootstrap mean."""
import numpy as np
import pytest

from hneuron_utils import stats


def test_cohen_kappa_binary_and_multiclass_by_hand():
    # binary: observed 2/4 agree; chance = 0.75*0.75 + 0.25*0.25 = 0.625 → (0.5 - 0.625) / 0.375 = -1/3
    assert stats.cohen_kappa([True, False, True, True], [True, True, True, False]) == pytest.approx(-1 / 3)
    # three classes: observed 4/6; shares pred (a 2, b 2, c 2), gold (a 3, b 2, c 1) → chance 6/36 + 4/36 + 2/36 = 1/3
    pred, gold = list("aabbcc"), list("aabbac")
    assert stats.cohen_kappa(pred, gold) == pytest.approx((5 / 6 - (2 * 3 + 2 * 2 + 2 * 1) / 36) / (1 - 12 / 36))
    assert stats.cohen_kappa(list("ab"), list("ab")) == 1.0
    assert np.isnan(stats.cohen_kappa(["x", "x"], ["x", "x"]))          # one class only: undefined
    with pytest.raises(ValueError):
        stats.cohen_kappa([], [])
    with pytest.raises(ValueError):
        stats.cohen_kappa([1, 0], [1])


def test_cohen_kappa_equals_scikit_learn():
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(0)
    for _ in range(200):
        gold = rng.integers(0, 3, 40).astype(str)
        pred = np.where(rng.random(40) < 0.6, gold, rng.integers(0, 3, 40).astype(str))
        assert stats.cohen_kappa(pred, gold) == pytest.approx(cohen_kappa_score(gold, pred), abs=1e-12)


def test_mean_with_ci():
    m, lo, hi = stats.mean_with_ci([0.0, 1.0, 1.0, 0.0], n_boot=500, seed=0)
    assert m == 0.5 and 0 <= lo < 0.5 < hi <= 1
    with pytest.raises(ValueError):
        stats.mean_with_ci([], n_boot=10, seed=0)


def test_interval_side_is_the_one_interval_rule():
    from hneuron_utils.stats import interval_side as side, verdict

    assert (side(0.01, 0.2), side(-0.2, -0.01), side(-0.1, 0.1), side(0.0, 0.1)) == (1, -1, 0, 0)
    assert side(0.51, 0.7, null=0.5) == 1 and side(0.4, 0.6, null=0.5) == 0
    assert side(float("nan"), float("nan")) == 0  # no interval: nothing detectable (05's smoke run has such slopes)
    assert verdict(0.01, 0.2, "a", "b") == "a beat b" and "cannot be compared" in verdict(float("nan"), 0.1, "a", "b")


def test_kappa_interval_covers_kappa_and_resamples_whole_groups():
    rng = np.random.default_rng(0)
    gold = rng.random(200) < 0.4
    pred = np.where(rng.random(200) < 0.85, gold, ~gold)  # a judge right 85% of the time
    k = stats.cohen_kappa(pred, gold)
    lo, hi = stats.kappa_interval(pred, gold, n_boot=500, seed=0)
    assert lo < k < hi and hi - lo < 0.35
    # ten responses per question, all alike: resampling questions sees 20 units, not 200, and is wider
    g_lo, g_hi = stats.kappa_interval(np.repeat(pred[:20], 10), np.repeat(gold[:20], 10), n_boot=500, seed=0,
                                      groups=np.repeat(np.arange(20), 10))
    r_lo, r_hi = stats.kappa_interval(np.repeat(pred[:20], 10), np.repeat(gold[:20], 10), n_boot=500, seed=0)
    assert g_hi - g_lo > 1.5 * (r_hi - r_lo)
    one = np.ones(30, bool)
    assert all(np.isnan(stats.kappa_interval(one, one, n_boot=50)))  # one class only: no interval, not [1, 1]


def test_agreement_summary_majority_baseline_for_two_and_more_classes():
    from hneuron_utils.judges.agreement import agreement_summary

    a = agreement_summary(np.array([True, True, False, False]), np.array([True, False, False, False]))
    assert a["agreement"] == 0.75 and a["majority baseline"] == 0.75 and 0 < a["kappa"] < 1
    m = agreement_summary(np.array(["x", "y", "z", "x", "x"]), np.array(["x", "y", "y", "x", "z"]))
    assert m["agreement"] == 0.6 and m["majority baseline"] == 0.4
