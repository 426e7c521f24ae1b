"""The sample-size checks: each stops with the numbers found, needed and the parameter to change."""

import numpy as np
import pytest

from hneuron_utils import checks
from hneuron_utils.probes import probe
from hneuron_utils.checks import SampleSizeError


def test_require_counts_names_found_needed_and_parameter():
    with pytest.raises(SampleSizeError) as e:
        checks.require_counts("step X", {"faithful": 1, "hallucinated": 9}, 3, ("pool_size",))
    msg = str(e.value)
    assert "faithful: 1" in msg and "hallucinated: 9" in msg and "at least 3" in msg and "`pool_size`" in msg
    checks.require_counts("step X", {"faithful": 3, "hallucinated": 9}, 3, ("pool_size",))  # enough: silent


def test_split_sizes_check():
    checks.require_split_sizes(checks.MIN_TRAIN_PER_CLASS, checks.MIN_TEST_PER_CLASS)
    with pytest.raises(SampleSizeError, match="01 train split.*train: 1"):
        checks.require_split_sizes(1, 5)
    with pytest.raises(SampleSizeError, match="01 test split.*test: 0"):
        checks.require_split_sizes(5, 0)


def test_probe_splits_check_per_class_and_split():
    ok_fit, ok_val, ok_test = np.array([0, 0, 1, 1]), np.array([0, 1]), np.array([0, 0, 1, 1])
    checks.require_probe_splits(ok_fit, ok_val, ok_test)
    with pytest.raises(SampleSizeError, match="fit split.*faithful: 0"):  # the failure: nothing left to fit
        checks.require_probe_splits(np.array([1, 1]), ok_val, ok_test)
    with pytest.raises(SampleSizeError, match="validation split.*hallucinated: 0"):
        checks.require_probe_splits(ok_fit, np.array([0]), ok_test)
    with pytest.raises(SampleSizeError, match="test set.*hallucinated: 1"):
        checks.require_probe_splits(ok_fit, ok_val, np.array([0, 0, 1]))


def test_require_items():
    checks.require_items("05 falseqa", 10, 10, ("oc_items",))
    with pytest.raises(SampleSizeError, match="items: 4.*`oc_items`"):
        checks.require_items("05 falseqa", 4, 10, ("oc_items",))


def test_fit_l1_on_one_class_is_a_clear_error_not_a_library_traceback():
    X = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)
    with pytest.raises(SampleSizeError, match="label 1: 0"):
        probe.fit_l1(X, np.zeros(6, dtype=int), 1.0, 0)
    with pytest.raises(SampleSizeError, match="label 0: 0, label 1: 0"):
        probe.fit_l1(X[:0], np.zeros(0, dtype=int), 1.0, 0)


def test_pool_margin_from_a_funnel():
    import pandas as pd

    funnel = pd.DataFrame({"stage": ["after the leak policy", "looked at (until both classes were full or the pool ended)",
                                     "  → faithful", "  → hallucinated"], "questions": [1000, 100, 8, 40]})
    m = checks.pool_margin(funnel, 8)
    assert m == {"faithful": 10.0, "hallucinated": 50.0}
