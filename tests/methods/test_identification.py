"""identify_and_score: one procedure for any set of CETT features."""
import numpy as np
import pytest

from hneuron_utils.probes import identification


def _features(n=80, L=3, F=20, planted=(5, 27), seed=0, length_signal=False):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    ans = rng.gamma(2.0, 0.01, size=(n, L * F)).astype(np.float32)
    oth = rng.gamma(2.0, 0.01, size=(n, L * F)).astype(np.float32)
    for j in planted:
        ans[:, j] += 0.03 * y
    tokens = rng.integers(1, 4, n) + (3 * y if length_signal else 0)
    resid = rng.normal(size=(n, L, 8)).astype(np.float32)
    conf = rng.normal(size=(n, 3)).astype(np.float32)
    train = np.arange(n) < 50
    test = ~train
    fit_idx, val_idx = np.arange(0, 40), np.arange(40, 50)
    return dict(ans=ans, oth=oth, y=y, train=train, test=test, fit_idx=fit_idx, val_idx=val_idx, resid=resid,
                confidence=conf, answer_tokens=tokens, n_layers=L, d_ff=F)


STEPS = dict(Cs=[1.0, 10.0, 100.0], mode="3-vs-1", tol=1e-6, subset_C=1.0, random_draws=3, n_boot=100, seed=0)


def test_identify_and_score_finds_the_planted_neurons_and_reports_the_comparison():
    f = _features()
    row = identification.identify_and_score(f.pop("ans"), f.pop("oth"), f.pop("y"), **f, **STEPS)
    assert {5, 27} <= set(row["columns"].tolist())
    assert row["H AUROC"] > 0.8 and row["H AUROC lo"] <= row["H AUROC"] <= row["H AUROC hi"]
    assert row["test per class"] == 15
    assert row["answer length AUROC lo"] <= row["answer length AUROC"] <= row["answer length AUROC hi"]
    assert row["best baseline"] != "H-neurons"
    assert row["H minus best lo"] <= row["H minus best AUROC"] <= row["H minus best hi"]
    assert "H-neurons" in row["H vs best"]


def test_span_rules_table_compares_two_feature_sets_by_the_same_steps():
    a, b = _features(), _features(planted=(5, 40), length_signal=True)
    rows = {}
    for name, f in (("answer_phrase", a), ("alias_or_whole", b)):
        rows[name] = identification.identify_and_score(f.pop("ans"), f.pop("oth"), f.pop("y"), **f, **STEPS)
    t = identification.span_rules_table(rows)
    assert list(t["span rule"]) == ["answer_phrase", "alias_or_whole"]
    assert "columns" not in t
    assert t["jaccard with the first rule's set"].iloc[0] == 1.0 and t["jaccard with the first rule's set"].iloc[1] < 1.0
    assert t["answer length AUROC"].iloc[1] > t["answer length AUROC"].iloc[0]   # the length signal is read


def test_identify_and_score_refuses_an_empty_set():
    f = _features(planted=())
    with pytest.raises(ValueError, match="no selectable C|no positive neuron"):
        identification.identify_and_score(f.pop("ans"), f.pop("oth"), f.pop("y"), **f,
                                          **{**STEPS, "Cs": [1e-6]})
