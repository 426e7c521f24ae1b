"""The notebooks' bookkeeping object and the readability contract of the numbered notebooks."""
import types
from pathlib import Path

import pandas as pd
import pytest

from hneuron_utils.workbook.notebook import Notebook

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    monkeypatch.setenv("HNEURON_ROOT", str(tmp_path))
    return types.SimpleNamespace(run_name="t", figures_dir=None)


def test_missing_input_names_the_notebook_to_run(cfg):
    with pytest.raises(FileNotFoundError, match=r"run notebook\(s\) 01, 02 with run_name='t' first"):
        Notebook("03", cfg, needs=["01_examples.jsonl", "02_features.json"])


def test_save_time_and_finish(cfg):
    nb = Notebook("03", cfg)
    out = nb.save(pd.DataFrame({"a": [1, 2]}), "03_x")
    assert list(pd.read_csv(nb.tables / "03_x.csv").a) == [1, 2] and len(out) == 2
    nb.save(pd.Series({"k": 3}, name="value"), "03_s")
    assert pd.read_csv(nb.tables / "03_s.csv", index_col=0).loc["k", "value"] == 3
    with nb.timed("stage"):
        pass
    with nb.timed("stage"):
        pass
    t = nb.finish()
    assert list(t.index) == ["stage"] and (nb.tables / "03_timings.csv").exists()


def test_write_jsonl_nan_becomes_null(cfg):
    nb = Notebook("04", cfg)
    p = nb.write_jsonl("04_x.jsonl", pd.DataFrame({"a": [1.0, float("nan")], "span": [[0, 2], None]}))
    assert p.read_text().splitlines()[1] == '{"a": null, "span": null}'
    assert nb.read_jsonl("04_x.jsonl").a.isna().tolist() == [False, True]


def test_bad_number_refused(cfg):
    with pytest.raises(ValueError, match="two digits"):
        Notebook("3", cfg)


def _stats():
    from hneuron_utils.workbook import notebook_stats

    return notebook_stats


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.name)
def test_notebooks_read_like_tutorials(path):
    s = _stats().stats(path)
    assert s["max lines"] <= 20, f"{path.name}: code cells over 20 lines: {s['cells over 20']}"
    assert s["median lines"] <= 10, s
    assert s["prose per code char"] >= 1.0, s


def test_stats_counts_lines(tmp_path):
    import json

    nb = {"cells": [{"cell_type": "code", "metadata": {}, "source": ["a = 1\n", "\n", "b = 2\n"]},
                    {"cell_type": "markdown", "metadata": {}, "source": ["xx"]}]}
    p = tmp_path / "01_x.ipynb"
    p.write_text(json.dumps(nb))
    s = _stats().stats(p)
    assert (s["median lines"], s["max lines"], s["code cells"]) == (2, 2, 1)


def test_package_is_laid_out_by_concept():
    flat = sorted(p.name for p in (ROOT / "hneuron_utils").glob("*.py"))
    # the core's one-module concepts: the stage cache, sample-size checks, paths, progress bars, statistics
    assert flat == ["__init__.py", "cache.py", "checks.py", "paths.py", "progress.py", "stats.py"], f"modules outside a concept subpackage: {flat}"
