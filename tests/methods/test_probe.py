"""Tests for hneuron_utils.probes.probe on small synthetic CETT data with a planted signal (fast, no model)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hneuron_utils import stats as S
from hneuron_utils.probes import probe as P

# Any warning (a deprecated sklearn argument, a convergence warning) fails the test.
pytestmark = pytest.mark.filterwarnings("error")

L, F = 3, 50
PLANTED = np.array([7, 60, 61, 120, 149])  # layer 0 neuron 7, layer 1 neurons 10, 11, layer 2 neurons 20, 49


def make(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ans/oth as float16 [n, L, F] CETT-like values; hallucinated answers have PLANTED raised."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 2)
    ans = rng.gamma(2.0, 0.005, size=(n, L * F))
    oth = rng.gamma(2.0, 0.005, size=(n, L * F))
    ans[np.ix_(y == 1, PLANTED)] += 0.012
    return ans.reshape(n, L, F).astype(np.float16), oth.reshape(n, L, F).astype(np.float16), y


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    ans, oth, y = make(300, 0)
    tr, va, te = slice(0, 150), slice(150, 225), slice(225, 300)
    return {"ans_tr": ans[tr], "oth_tr": oth[tr], "y_tr": y[tr], "ans_va": ans[va], "y_va": y[va],
            "ans_te": ans[te], "y_te": y[te]}


# --------------------------------------------------------------------------- data


def test_flatten_is_row_major_float32():
    feats = np.arange(2 * L * F, dtype=np.float16).reshape(2, L, F)
    flat = P.flatten(feats)
    assert flat.shape == (2, L * F) and flat.dtype == np.float32 and flat.flags.c_contiguous
    assert flat[1, 2 * F + 5] == feats[1, 2, 5]
    same = np.zeros((4, 6), dtype=np.float32)
    assert P.flatten(same) is same  # no copy when already float32 C-contiguous 2-D
    with pytest.raises(ValueError):
        P.flatten(np.zeros(3))


def test_training_set_3_vs_1_and_1_vs_1():
    ans, oth, y = make(10, 1)
    X, t = P.training_set(ans, oth, y, "3-vs-1")
    assert X.shape == (20, L * F) and X.dtype == np.float32
    np.testing.assert_array_equal(X[:10], P.flatten(ans))
    np.testing.assert_array_equal(X[10:], P.flatten(oth))
    np.testing.assert_array_equal(t, np.concatenate([y, np.zeros(10)]))
    assert t.sum() == y.sum()  # only hallucinated answer rows are positive
    X1, t1 = P.training_set(ans, None, y, "1-vs-1")
    assert X1.shape == (10, L * F)
    np.testing.assert_array_equal(t1, y)


@pytest.mark.parametrize("kwargs, match", [
    ({"mode": "2-vs-2"}, "3-vs-1, 1-vs-1"),
    ({"mode": "3-vs-1", "oth": None}, "oth"),
    ({"mode": "3-vs-1", "y": np.full(10, 2)}, "0 or 1"),
    ({"mode": "1-vs-1", "y": np.zeros(9)}, "10 entries"),
    ({"mode": "3-vs-1", "oth": np.zeros((10, L, F + 1))}, "shape"),
])
def test_training_set_rejects_bad_input(kwargs, match):
    ans, oth, y = make(10, 1)
    args = {"ans": ans, "oth": oth, "y": y} | kwargs
    with pytest.raises(ValueError, match=match):
        P.training_set(**args)


# --------------------------------------------------------------------------- probe on planted signal


@pytest.mark.parametrize("mode", P.MODES)
def test_probe_finds_planted_neurons(data, mode):
    X, y = P.training_set(data["ans_tr"], data["oth_tr"], data["y_tr"], mode)
    model = P.fit_l1(X, y, C=10.0, seed=0)
    pos = set(np.flatnonzero(model.coef_[0] > 0))
    assert len(pos & set(PLANTED)) >= 4 and len(pos - set(PLANTED)) <= 1
    ev = S.evaluate(data["y_te"], P.scores(model, data["ans_te"]))
    assert ev["accuracy"] > 0.9 and ev["auroc"] > 0.95
    hn = P.h_neurons(model.coef_, L, F)
    assert set(hn["flat_index"]) == pos
    assert (hn["layer"] * F + hn["neuron"] == hn["flat_index"]).all()


def test_c_grid_table_and_coefs(data):
    Cs = [0.1, 10.0, 1000.0]
    g = P.c_grid(data["ans_tr"], data["oth_tr"], data["y_tr"], data["ans_va"], data["y_va"], Cs=Cs, mode="3-vs-1", seed=0, n_layers=L, d_ff=F)
    t = g.table
    assert list(t.columns) == ["C", "n_positive", "n_nonzero", "n_iter", "converged", "permille", "val_accuracy", "val_auroc"]
    assert t["converged"].all()
    assert list(t["C"]) == Cs and set(g.coefs) == set(Cs) == set(g.intercepts)
    for _, row in t.iterrows():
        coef = g.coefs[row["C"]]
        assert coef.shape == (L * F,)
        assert row["n_positive"] == len(g.positive(row["C"])) == (coef > 0).sum()
        assert row["n_nonzero"] == (coef != 0).sum() >= row["n_positive"]
        assert row["permille"] == pytest.approx(row["n_positive"] / (L * F) * 1000)
    assert t.loc[0, "n_positive"] == 0  # strong regularisation: empty probe
    assert t.loc[2, "n_positive"] > t.loc[1, "n_positive"]  # weak regularisation lets noise in
    assert t.loc[1, "val_accuracy"] > 0.9
    # the held-out rule picks the sparse, accurate probe, not the empty one
    assert P.select_c(t, "held_out")["C"] == 10.0
    with pytest.raises(ValueError, match="n_layers"):
        P.c_grid(data["ans_tr"], data["oth_tr"], data["y_tr"], data["ans_va"], data["y_va"], Cs=Cs, mode="3-vs-1", seed=0, n_layers=L, d_ff=F + 1)


def test_random_baseline_is_near_chance_and_h_set_is_not(data):
    args = (data["ans_tr"], data["oth_tr"], data["y_tr"], data["ans_te"], data["y_te"])
    h = P.evaluate_subset(*args, columns=PLANTED, mode="3-vs-1")
    assert h["accuracy"] > 0.9 and h["auroc"] > 0.95
    rb = P.random_baseline(*args, k=len(PLANTED), draws=8, mode="3-vs-1", seed=0, exclude=PLANTED)
    assert list(rb.columns) == ["draw", "accuracy", "auroc"] and list(rb["draw"]) == list(range(8))
    assert 0.3 < rb["accuracy"].mean() < 0.7 and 0.3 < rb["auroc"].mean() < 0.7
    assert rb["accuracy"].max() < h["accuracy"]
    pd.testing.assert_frame_equal(rb, P.random_baseline(*args, k=len(PLANTED), draws=8, mode="3-vs-1", seed=0, exclude=PLANTED))


def test_random_baseline_respects_exclude(data):
    args = (data["ans_tr"], data["oth_tr"], data["y_tr"], data["ans_te"], data["y_te"])
    others = np.setdiff1d(np.arange(L * F), PLANTED)
    rb = P.random_baseline(*args, k=len(PLANTED), draws=3, mode="1-vs-1", exclude=others)  # only PLANTED left
    assert (rb["accuracy"] > 0.9).all() and rb["accuracy"].nunique() == 1
    with pytest.raises(ValueError, match="k must be"):
        P.random_baseline(*args, k=6, draws=1, mode="1-vs-1", exclude=others)


def test_random_classifiers_are_the_baseline_and_round_trip_through_a_file(data, tmp_path):
    args = (data["ans_tr"], data["oth_tr"], data["y_tr"])
    clfs = P.random_classifiers(*args, k=4, draws=3, mode="3-vs-1", seed=5, exclude=PLANTED)
    assert all(not set(c.columns) & set(PLANTED) for c in clfs)
    assert [list(c.columns) for c in clfs] == [list(c) for c in P.random_columns(L * F, 4, 3, 5, PLANTED)]
    pd.testing.assert_frame_equal(P.evaluate_classifiers(clfs, data["ans_te"], data["y_te"]),
                                  P.random_baseline(*args, data["ans_te"], data["y_te"], k=4, draws=3, mode="3-vs-1", seed=5,
                                                    exclude=PLANTED))
    h = P.fit_subset(*args, PLANTED, "3-vs-1")
    path = tmp_path / "clfs.npz"
    P.save_classifiers(path, {"h": h, "random_0": clfs[0]}, {"C": 1.0, "model": "m"})
    back, meta = P.load_classifiers(path)
    assert meta == {"C": 1.0, "model": "m", "names": ["h", "random_0"]}
    for name, orig in (("h", h), ("random_0", clfs[0])):
        np.testing.assert_array_equal(back[name].columns, orig.columns)
        np.testing.assert_array_equal(back[name](data["ans_te"]), orig(data["ans_te"]))
    with pytest.raises(ValueError, match="may not contain"):
        P.save_classifiers(path, {"a/b": h}, {})


def test_fit_subset_standardises_and_accepts_3d(data):
    clf = P.fit_subset(data["ans_tr"], data["oth_tr"], data["y_tr"], PLANTED, "3-vs-1")
    X, _ = P.training_set(data["ans_tr"], data["oth_tr"], data["y_tr"], "3-vs-1")
    np.testing.assert_allclose(clf.mean, X[:, PLANTED].mean(0), rtol=1e-5)
    np.testing.assert_allclose(clf.std, X[:, PLANTED].std(0), rtol=1e-4)
    p3 = clf.predict_proba_ans(data["ans_te"])
    np.testing.assert_allclose(p3, P.scores(clf, P.flatten(data["ans_te"])))
    assert p3.shape == (len(data["y_te"]),) and ((p3 >= 0) & (p3 <= 1)).all()
    with pytest.raises(ValueError, match="duplicates"):
        P.fit_subset(data["ans_tr"], data["oth_tr"], data["y_tr"], [1, 1], "3-vs-1")
    with pytest.raises(ValueError, match="columns must be in"):
        P.fit_subset(data["ans_tr"], data["oth_tr"], data["y_tr"], [L * F], "3-vs-1")


# --------------------------------------------------------------------------- metrics


def test_evaluate_known_values():
    y = np.array([0, 0, 1, 1])
    ev = S.evaluate(y, np.array([0.1, 0.6, 0.4, 0.9]))
    assert ev["accuracy"] == 0.5 and ev["auroc"] == 0.75
    assert np.isnan(S.evaluate(np.ones(3), np.array([0.2, 0.7, 0.9]))["auroc"])
    assert S.evaluate(y, np.array([0.5, 0.5, 0.51, 0.51]))["accuracy"] == 1.0  # 0.5 is predicted faithful


def test_auroc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    for n in (5, 37, 500):
        y = rng.integers(0, 2, n)
        y[:2] = [0, 1]
        score = rng.integers(0, 6, n) / 5  # many ties
        assert S.evaluate(y, score)["auroc"] == pytest.approx(roc_auc_score(y, score), abs=1e-12)


def test_bootstrap_ci_contains_point_and_narrows():
    def synth(n: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(n)
        y = rng.integers(0, 2, n)
        return y, np.clip(0.5 + (y - 0.5) * 0.3 + rng.normal(0, 0.25, n), 0, 1)

    for metric in S.METRICS:
        widths = []
        for n in (60, 2000):
            y, prob = synth(n)
            point, lo, hi = S.bootstrap_ci(y, prob, metric, n_boot=1000, seed=0)
            assert point == S.evaluate(y, prob)[metric]
            assert lo <= point <= hi and hi > lo
            widths.append(hi - lo)
        assert widths[1] < widths[0] / 2
    y, prob = synth(60)
    assert S.bootstrap_ci(y, prob, "auroc", 200, 1) == S.bootstrap_ci(y, prob, "auroc", 200, 1)
    _, lo90, hi90 = S.bootstrap_ci(y, prob, "auroc", 200, 1, level=0.9)
    _, lo99, hi99 = S.bootstrap_ci(y, prob, "auroc", 200, 1, level=0.99)
    assert hi99 - lo99 > hi90 - lo90
    with pytest.raises(ValueError, match="accuracy, auroc"):
        S.bootstrap_ci(y, prob, "f1", 10, 0)


def test_bootstrap_auroc_skips_single_class_resamples():
    y, prob = np.array([0, 1, 1, 1, 1]), np.array([0.1, 0.9, 0.8, 0.7, 0.6])
    point, lo, hi = S.bootstrap_ci(y, prob, "auroc", 200, 0)  # many resamples lack the lone 0
    assert point == lo == hi == 1.0


# --------------------------------------------------------------------------- C selection


def grid_table(**extra) -> pd.DataFrame:
    t = pd.DataFrame({"C": [0.1, 1.0, 3.0, 10.0, 30.0],
                      "n_positive": [0, 4, 9, 12, 40],
                      "n_nonzero": [0, 5, 12, 20, 60],
                      "permille": [0, 4, 9, 12, 40],
                      "val_accuracy": [0.99, 0.80, 0.85, 0.85, 0.85],
                      "val_auroc": [0.5, 0.85, 0.90, 0.90, 0.88]})
    return t.assign(**extra)


def test_select_c_held_out_with_tie_breaks():
    t = grid_table()
    row = P.select_c(t, "held_out")  # C=0.1 has the best accuracy but no positive neuron
    assert row["C"] == 3.0  # tie on accuracy with C=10, 30; best AUROC ties 3 and 10; fewer positives
    assert row.name == 2
    assert P.select_c(t.assign(val_auroc=[0.5, 0.85, 0.90, 0.91, 0.88]))["C"] == 10.0


def test_select_c_paper_rule():
    t = grid_table(suppressed_accuracy=[0.9, 0.70, 0.50, 0.52, 0.40])
    assert P.select_c(t, "paper")["C"] == 1.0  # 0.80 + 0.70 beats 0.85 + 0.52
    t.loc[1, "suppressed_accuracy"] = np.nan  # not evaluated -> not selectable
    assert P.select_c(t, "paper")["C"] == 10.0


def test_select_c_errors():
    with pytest.raises(KeyError, match="suppressed_accuracy"):
        P.select_c(grid_table(), "paper")
    with pytest.raises(ValueError, match="n_positive == 0"):
        P.select_c(grid_table(n_positive=0), "held_out")
    with pytest.raises(ValueError, match="held_out, paper"):
        P.select_c(grid_table(), "best")


# --------------------------------------------------------------------------- neurons and stability


def test_h_neurons_decoding_and_order():
    coef = np.zeros(L * F)
    coef[[3, F + 7, 2 * F + 49, 2 * F]] = [0.5, 2.0, 1.0, -3.0]
    hn = P.h_neurons(coef, L, F)
    assert list(hn.columns) == ["layer", "neuron", "flat_index", "coefficient"]
    assert hn[["layer", "neuron"]].values.tolist() == [[1, 7], [2, 49], [0, 3]]
    assert list(hn["flat_index"]) == [F + 7, 2 * F + 49, 3]
    assert list(hn["coefficient"]) == [2.0, 1.0, 0.5]
    assert P.h_neurons(np.zeros(L * F), L, F).empty
    with pytest.raises(ValueError):
        P.h_neurons(coef, L, F - 1)


def test_jaccard():
    assert P.jaccard({1, 2, 3}, [2, 3, 4]) == 0.5
    assert P.jaccard(np.array([5]), [5]) == 1.0
    assert P.jaccard([1], [2]) == 0.0
    assert P.jaccard([], []) == 1.0


def test_stability_high_for_planted_and_zero_for_wrong_reference(data):
    args = (data["ans_tr"], data["oth_tr"], data["y_tr"])
    jac = P.stability(*args, C=10.0, mode="3-vs-1", n_boot=8, seed=0, reference=PLANTED)
    assert jac.shape == (8,) and ((jac >= 0) & (jac <= 1)).all()
    assert jac.mean() > 0.7
    wrong = P.stability(*args, C=10.0, mode="1-vs-1", n_boot=4, seed=0, reference=[0, 1, 2])
    assert wrong.mean() < 0.2


def test_stability_resamples_examples_keeping_ans_and_oth_together(monkeypatch):
    n = 40
    ans = np.repeat(np.arange(n, dtype=np.float32)[:, None], 6, axis=1)  # row i holds i everywhere
    oth = ans + 1000  # example i's other-token row holds i + 1000
    y = np.arange(n) % 2
    seen = []
    real_fit = P.fit_l1

    def spy(X, t, C, seed, **kw):
        seen.append((X.copy(), t.copy()))
        return real_fit(X, t, C, seed, **kw)

    monkeypatch.setattr(P, "fit_l1", spy)
    P.stability(ans, oth, y, C=1.0, mode="3-vs-1", n_boot=3, seed=0, reference=[0])
    assert len(seen) == 3
    for X, t in seen:
        ids = X[:n, 0].astype(int)
        np.testing.assert_array_equal(X[n:, 0], ids + 1000)  # same examples, same order
        np.testing.assert_array_equal(t[:n], y[ids])
        assert (t[n:] == 0).all()
        assert len(np.unique(ids)) < n  # a real resample with replacement
    assert not np.array_equal(seen[0][0], seen[1][0])
    with pytest.raises(ValueError, match="3-vs-1"):
        P.stability(ans, oth[:-1], y, C=1.0, mode="3-vs-1", n_boot=1, seed=0, reference=[0])


# --------------------------------------------------------------------------- length confound


def test_length_check_detects_length_labels():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 200, 400)
    y = (lengths > np.median(lengths)).astype(int)
    prob = np.where(rng.random(400) < 0.8, y, 1 - y) * 0.6 + 0.2  # 80 % correct, unrelated to length within strata
    out = P.length_check(lengths, y, prob, n_strata=4)
    assert out["length_auroc"] > 0.99
    assert P.length_check(-lengths, y, prob)["length_auroc"] < 0.01  # raw, not folded to >= 0.5
    s = out["strata"]
    assert len(s) == 4 and s["n"].sum() == 400
    assert (s["n_hallucinated"] + s["n_faithful"] == s["n"]).all()
    assert (s["length_min"].values[1:] > s["length_max"].values[:-1]).all()
    assert out["stratified_accuracy"] == pytest.approx(S.evaluate(y, prob)["accuracy"])
    # each stratum is (almost) one class: the majority baseline is near 1, far above the probe
    assert out["stratified_majority_accuracy"] > 0.95 > out["stratified_accuracy"]


def test_length_check_uninformative_length():
    rng = np.random.default_rng(1)
    lengths = rng.integers(5, 200, 2000)
    y = rng.integers(0, 2, 2000)
    prob = np.clip(0.5 + (y - 0.5) * 0.4 + rng.normal(0, 0.2, 2000), 0, 1)
    out = P.length_check(lengths, y, prob, n_strata=5)
    assert abs(out["length_auroc"] - 0.5) < 0.05
    assert len(out["strata"]) == 5
    assert out["stratified_auroc"] == pytest.approx(S.evaluate(y, prob)["auroc"], abs=0.03)


def _correlated_problem(seed=0, n=120, p=400):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 20))
    X = (base @ rng.normal(size=(20, p)) + 0.3 * rng.normal(size=(n, p))).astype(np.float32)
    y = (base[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(int)
    return np.ascontiguousarray(X), y


def test_converged_l1_fit_does_not_depend_on_the_solver_seed():
    X, y = _correlated_problem()
    fits = [P.fit_l1(X, y, C=1.0, seed=s) for s in (0, 1, 2)]
    assert all(f.converged for f in fits)
    sets = [set(np.flatnonzero(f.coef_[0] > 0)) for f in fits]
    assert sets[0] and sets[0] == sets[1] == sets[2]
    # and it reaches a lower objective than scikit-learn's default tolerance (the official code's)
    loose = P.fit_l1(X, y, C=1.0, seed=0, tol=1e-4)
    assert P.l1_objective(fits[0], X, y) <= P.l1_objective(loose, X, y) + 1e-6


def test_l1_fit_that_hits_its_cap_warns_loudly():
    X, y = _correlated_problem()
    with pytest.warns(P.NotConvergedWarning, match="did NOT converge"):
        m = P.fit_l1(X, y, C=10.0, seed=0, max_iter=2)
    assert m.converged is False and m.n_iter == 2


def test_bootstrap_sets_match_stability_and_stability_selected_keeps_the_majority(data):
    args = (data["ans_tr"], data["oth_tr"], data["y_tr"])
    sets = P.bootstrap_sets(*args, C=10.0, mode="3-vs-1", n_boot=6, seed=0)
    jac = P.stability(*args, C=10.0, mode="3-vs-1", n_boot=6, seed=0, reference=PLANTED)
    np.testing.assert_array_equal(jac, [P.jaccard(PLANTED, s) for s in sets])   # the same refits, the same order
    stable = P.stability_selected(sets, min_share=0.5)
    assert P.jaccard(PLANTED, stable) > 0.7
    assert list(P.stability_selected([[1, 2], [2, 3], [2, 4], [5]], min_share=0.5)) == [2]   # 3 of 4 refits
    assert list(P.stability_selected([[1, 2], [2, 3]], min_share=0.5)) == [1, 2, 3]           # 1 of 2 is half
    assert list(P.stability_selected([[1, 2], [2, 3]], min_share=1.0)) == [2]
    with pytest.raises(ValueError):
        P.stability_selected([], min_share=0.5)
    with pytest.raises(ValueError):
        P.stability_selected([[1]], min_share=0.0)
