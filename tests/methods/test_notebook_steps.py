"""The package functions that hold the notebooks' steps (their logic left the notebooks in the layout move)."""
import numpy as np
import pandas as pd
import pytest

from hneuron_utils.interventions import steering
from hneuron_utils.probes import baselines, probe
from hneuron_utils.workbook import readouts


def test_validation_split_is_per_class_disjoint_and_seeded():
    y = np.array([0] * 20 + [1] * 10 + [0, 1] * 5)
    train = np.array([True] * 30 + [False] * 10)
    fit, val = probe.validation_split(y, train, 0.2, seed=3)
    assert not set(fit) & set(val) and set(fit) | set(val) == set(np.flatnonzero(train))
    assert (y[val] == 0).sum() == 4 and (y[val] == 1).sum() == 2
    assert np.array_equal(val, probe.validation_split(y, train, 0.2, seed=3)[1])
    with pytest.raises(ValueError):
        probe.validation_split(y, train, 1.0, seed=0)


def test_conditions_share_the_unmodified_model():
    sets = {"H-neurons": [1, 2], "random 0": [3, 4]}
    c = steering.conditions(sets, [0.0, 1.0, 2.0])
    assert c == [("none", 1.0), ("H-neurons", 0.0), ("H-neurons", 2.0), ("random 0", 0.0), ("random 0", 2.0)]
    flags = {("b", "none", 1.0): [1], ("b", "H-neurons", 0.0): [0], ("b", "H-neurons", 2.0): [1]}
    assert steering.by_alpha(flags, "b", "H-neurons", [0.0, 1.0, 2.0]) == {0.0: [0], 1.0: [1], 2.0: [1]}


def test_read_transfer_words_follow_the_intervals():
    rows = []
    for s, (h_lo, h_hi) in {"above": (0.8, 0.9), "overlap": (0.5, 0.9)}.items():
        rows += [{"set": s, "classifier": "random", "accuracy": 0.6, "auroc": 0.6, "auroc_lo": 0.55, "auroc_hi": 0.7,
                  "n faithful": 20, "n hallucinated": 20},
                 {"set": s, "classifier": "H-neurons", "accuracy": 0.8, "auroc": 0.85, "auroc_lo": h_lo, "auroc_hi": h_hi,
                  "n faithful": 20, "n hallucinated": 20}]
    rows += [{"set": "empty", "classifier": "random", "accuracy": np.nan, "auroc": np.nan, "auroc_lo": np.nan,
              "auroc_hi": np.nan, "n faithful": 0, "n hallucinated": 5},
             {"set": "empty", "classifier": "H-neurons", "accuracy": np.nan, "auroc": np.nan, "auroc_lo": np.nan,
              "auroc_hi": np.nan, "n faithful": 0, "n hallucinated": 5}]
    lines = readouts.read_transfer(pd.DataFrame(rows), reference_set="none")
    assert "H-neurons above random" in lines[0] and "not separable from" in lines[1] and "not scored" in lines[2]
    assert "transfers (interval above chance)" in lines[0] and "does not transfer detectably" in lines[1]


def test_origin_read_transfer_words_and_ceilings():
    def rows(s, n, lo, hi):
        return [{"set": s, "classifier": "random neurons (20 draws)", "n faithful": n, "n hallucinated": n,
                 "auroc": 0.5 if n else np.nan, "auroc_lo": 0.4 if n else np.nan, "auroc_hi": 0.6 if n else np.nan},
                {"set": s, "classifier": "H-neurons", "n faithful": n, "n hallucinated": n,
                 "auroc": (lo + hi) / 2 if n else np.nan, "auroc_lo": lo if n else np.nan, "auroc_hi": hi if n else np.nan}]
    t = pd.DataFrame(rows("A", 40, 0.62, 0.8) + rows("B", 3, 0.9, 1.0) + rows("C", 0, 0, 0))
    sizes = {"A": {"why smaller": ""}, "B": {"why smaller": ""},
             "C": {"why smaller": "measured ceiling: the whole pool (10 questions) yields only 0 faithful question(s)"}}
    a, b, c = readouts.read_origin_transfer(t, sizes)
    assert "n = 40 + 40" in a and "transfers (interval above chance)" in a and "H-neurons above random neurons" in a
    assert "too few to read" in b and "transfers" not in b
    assert "measured ceiling" in c


def test_read_differences_and_headline_pick_the_best_baseline():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 40)
    scores = {"H-neurons": y + rng.normal(0, 0.3, 80), "noise": rng.normal(size=80), "good": y + rng.normal(0, 0.1, 80)}
    metrics, diffs = baselines.compare(y, scores, "H-neurons", 200, 0)
    lines = readouts.read_differences(diffs)
    assert any(line.startswith("H-neurons beat noise") for line in lines)
    assert metrics[~metrics.method.str.startswith("H")].sort_values("auroc").iloc[-1].method == "good"
