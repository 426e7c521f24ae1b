import pytest

from hneuron_utils import report
from hneuron_utils.paths import project_root

RUN = project_root() / "results" / "default"


@pytest.mark.skipif(not (RUN / "run_log.json").exists(), reason="no committed default run yet")
def test_readme_results_block_matches_committed_default_run():
    assert report.readme_block() == report.results_block(RUN), \
        "README results are stale: run `python -m hneuron_utils.report --update-readme`"


def test_generalisation_lines_show_every_set_and_empty_ones(tmp_path):
    import pandas as pd

    t = pd.DataFrame([
        {"model": "m", "classifier": "random neurons", "‰": 0.1, "NQ-Open acc": 0.55, "NQ-Open acc 95% CI": "0.500–0.600",
         "NQ-Open AUROC": 0.52, "NQ-Open AUROC 95% CI": "0.450–0.600", "NQ-Open n per class": 40,
         "NonExist acc": float("nan"), "NonExist acc 95% CI": "—", "NonExist AUROC": float("nan"),
         "NonExist AUROC 95% CI": "—", "NonExist n per class": 0},
        {"model": "m", "classifier": "H-neurons", "‰": 0.1, "NQ-Open acc": 0.7, "NQ-Open acc 95% CI": "0.612–0.801",
         "NQ-Open AUROC": 0.75, "NQ-Open AUROC 95% CI": "0.650–0.840", "NQ-Open n per class": 40,
         "NonExist acc": float("nan"), "NonExist acc 95% CI": "—", "NonExist AUROC": float("nan"),
         "NonExist AUROC 95% CI": "—", "NonExist n per class": 0}])
    (tmp_path / "tables").mkdir()
    t.to_csv(tmp_path / "tables" / "04_table1.csv", index=False)
    pd.DataFrame({"NQ-Open": {"why smaller": ""}, "NonExist": {"why smaller": "only 0 faithful"}}).to_csv(
        tmp_path / "tables" / "04_sets.csv")
    text = "\n".join(report._generalisation_lines(tmp_path))
    assert "| NQ-Open | 40 | 55.0% | 70.0% [61.2, 80.1] | 0.520 | 0.750 [0.650, 0.840] |" in text
    assert "| NonExist | 0 | — | — (a class is empty) |" in text and "NonExist: only 0 faithful" in text
    assert report._generalisation_lines(tmp_path / "missing") == []


def test_results_block_lists_earlier_runs_of_a_notebook(tmp_path):
    import json

    log = {"profile": "p.yaml", "params": {"run_name": "r", "dtype": "auto", "seed": 0, "model": "m"},
           "git_commit": "abc", "cpus": 2, "started": "t0",
           "notebooks": {"04_generalisation.ipynb": {"status": "ok", "seconds": 120.0, "started": "t2"}},
           "earlier": [{"notebook": "04_generalisation.ipynb", "status": "ok", "seconds": 1005.5, "started": "t1",
                        "git_commit": "def"}]}
    (tmp_path / "run_log.json").write_text(json.dumps(log))
    text = report.results_block(tmp_path)
    assert "| `04_generalisation.ipynb` | ok | 2.0 min (120 s) | t2 | `abc` |" in text
    assert "An earlier run of `04_generalisation.ipynb` in this results folder (started t1, commit `def`) took 16.8 min" in text


def test_stale_notebooks_are_named():
    log = {"notebooks": {"02_a.ipynb": {"started": "2026-01-02"}, "03_b.ipynb": {"started": "2026-01-03"},
                         "04_c.ipynb": {"started": "2026-01-01"}}}
    lines = report._stale_lines(log)
    assert len(lines) == 2 and "`04_c.ipynb` predates the latest run of `02_a.ipynb`, `03_b.ipynb`" in lines[1]
    log["notebooks"]["04_c.ipynb"]["started"] = "2026-01-04"
    assert report._stale_lines(log) == []
