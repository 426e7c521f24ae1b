"""The reproducibility helpers: redrawn-dataset comparison, the isolated stage cache, the kernel report."""

import os

import pandas as pd
import pytest

from hneuron_utils.workbook import env, repro
from hneuron_utils.paths import MODEL_DIRS, cache_root


def test_redraw_summary_counts_differences_with_intervals():
    t = pd.DataFrame({
        "id": list("abcdef"),
        "greedy_correct (run)": [True, False, False, False, True, False],
        "greedy_correct (here)": [True, False, True, False, True, False],
        "n_correct (run)": [10, 0, 0, 3, None, None], "n_correct (here)": [10, 0, 1, 3, None, None],
        "label (run)": ["faithful", "hallucinated", "hallucinated", "mixed", None, None],
        "label (here)": ["faithful", "hallucinated", "mixed", "mixed", None, None]})
    s = repro.redraw_summary(t).set_index("outcome")
    assert s.loc["greedy screen: correct/wrong flips", ["differ", "n"]].tolist() == [1, 6]
    assert s.loc["K samples: number correct differs", ["differ", "n"]].tolist() == [1, 4]
    assert s.loc["K samples: the run's hallucinated questions not hallucinated here", ["differ", "n"]].tolist() == [1, 2]
    zero = s.loc["K samples: the run's faithful questions not faithful here"]
    assert zero["differ"] == 0 and zero["lo"] == 0.0 and zero["hi"] > 0.5  # 0 of 1: an interval, not a point
    assert (s.lo <= s.share).all() and (s.share <= s.hi).all()


def test_isolated_stage_cache_is_empty_shares_models_and_restores(tmp_path, monkeypatch):
    monkeypatch.setenv("HNEURON_CACHE", str(tmp_path))
    (tmp_path / "stages").mkdir()
    with repro.isolated_stage_cache() as c:
        assert cache_root() == c.resolve() and sorted(p.name for p in c.iterdir()) == sorted(MODEL_DIRS)
        assert all((c / d).resolve() == (tmp_path / d).resolve() for d in MODEL_DIRS)
    assert os.environ["HNEURON_CACHE"] == str(tmp_path) and not c.exists()


def test_redraw_refuses_more_sampled_than_the_run_sampled_regardless():
    looked = pd.DataFrame({"id": ["a", "b"], "in_check": [True, False]})
    with pytest.raises(ValueError, match="screen_check_size"):
        repro.redraw_outcomes({}, looked, n_greedy=2, n_sampled=2, dtype="float32")


def test_kernel_report_names_the_capability_and_the_variables(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    k = env.kernels()
    assert k["ONEDNN_MAX_CPU_ISA"] == "AVX2" and k["cpu capability (torch)"] and set(env.KERNEL_VARIABLES) <= set(k)
