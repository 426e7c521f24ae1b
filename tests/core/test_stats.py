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
