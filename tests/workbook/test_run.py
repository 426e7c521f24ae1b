import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from hneuron_utils.workbook import config, run


def test_only_selects_and_rejects_unknown_numbers():
    assert [p.name[:2] for p in run.notebooks(["00"])] == ["00"]
    with pytest.raises(config.ConfigError, match="unknown notebook numbers"):
        run.notebooks(["99"])


@pytest.mark.notebooks
def test_failing_notebook_is_named_with_its_cell(tmp_path):
    nb = new_notebook(metadata={"kernelspec": {"name": run.KERNEL_NAME, "display_name": "x", "language": "python"}})
    p = new_code_cell("seed = 0")
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, new_code_cell("x = 1"), new_code_cell("raise ValueError('boom')")]
    src = tmp_path / "07_fail.ipynb"
    nbformat.write(nb, src)
    with pytest.raises(run.NotebookFailed) as e:
        run.run_notebook(src, tmp_path / "out.ipynb", {"seed": 1}, run.ensure_kernel(), log_output=False)
    msg = str(e.value)
    assert "07_fail.ipynb failed in cell" in msg and "ValueError: boom" in msg


def _toy_notebook(path, body):
    nb = new_notebook(metadata={"kernelspec": {"name": run.KERNEL_NAME, "display_name": "x", "language": "python"}})
    p = new_code_cell("# Parameters\nseed = 0")
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, new_code_cell(body)]
    nbformat.write(nb, path)
    return path


@pytest.mark.notebooks
def test_failed_rerun_keeps_the_last_good_entry_notebook_and_parameters(tmp_path, monkeypatch):
    import json

    monkeypatch.setattr(run, "run_dir", lambda name: tmp_path / "results" / name)
    nb = _toy_notebook(tmp_path / "07_toy.ipynb", "if seed == 13:\n    raise ValueError('unlucky')\nprint('seed', seed)")
    good = run.run("smoke", run_name="hist", log_output=False, notebook_files=[nb])
    out = tmp_path / "results" / "hist"
    assert good["notebooks"]["07_toy.ipynb"]["status"] == "ok"
    good_text = (out / "07_toy.ipynb").read_text()
    executed = nbformat.read(out / "07_toy.ipynb", as_version=4)
    hidden = [c for c in executed.cells if c.metadata.get("jupyter", {}).get("source_hidden")]
    assert {t for c in hidden for t in c.metadata["tags"]} == {"parameters", "injected-parameters"}
    with pytest.raises(run.NotebookFailed):
        run.run("smoke", run_name="hist", log_output=False, overrides={"seed": 13}, notebook_files=[nb])
    log = json.loads((out / "run_log.json").read_text())
    assert log["notebooks"]["07_toy.ipynb"]["status"] == "failed"
    assert log["notebooks"]["07_toy.ipynb"]["seconds_until_failure"] > 0
    assert log["notebooks"]["07_toy.ipynb"]["params"]["seed"] == 13
    assert [e["status"] for e in log["earlier"]] == ["ok"]          # the good entry moved, not erased
    assert log["params"]["seed"] == 0                                # the run's parameters are the good run's
    assert (out / "07_toy.ipynb").read_text() == good_text           # last good executed notebook untouched
    assert "unlucky" in (out / "07_toy.failed.ipynb").read_text()
    assert not list(out.glob(".*.running.ipynb"))


def test_invocation_seconds_counts_only_the_latest_invocation():
    log = {"notebooks": {"00_a.ipynb": {"seconds": 10.0}, "01_b.ipynb": {"seconds": 5.0}},
           "last_invocation": ["01_b.ipynb"]}
    assert run.invocation_seconds(log) == 5.0


def test_code_digest_follows_the_code_and_the_profile_not_the_results(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    for rel, text in {"hneuron_utils/a.py": "x = 1\n", "hneuron_utils/sub/b.py": "y = 2\n",
                      "notebooks/01_one.ipynb": "{}", "params/p.yaml": "seed: 0\n", "results/r/t.csv": "a\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    monkeypatch.setattr(run, "project_root", lambda: root)
    prof = root / "params" / "p.yaml"
    d0 = run.code_digest(prof)
    assert len(d0) == 16 and d0 == run.code_digest(prof)
    (root / "results" / "r" / "t.csv").write_text("b\n")  # results do not enter it
    (root / "README.md").write_text("new numbers")
    assert run.code_digest(prof) == d0
    for rel in ("hneuron_utils/sub/b.py", "notebooks/01_one.ipynb", "params/p.yaml"):
        before = run.code_digest(prof)
        (root / rel).write_text((root / rel).read_text() + " ")
        assert run.code_digest(prof) != before, rel


def test_the_committed_run_refuses_changed_code(tmp_path, monkeypatch):
    monkeypatch.setattr(run, "run_dir", lambda name: tmp_path / "results" / name)
    monkeypatch.setattr(run, "_git_commit", lambda: "abc1234-dirty")
    nb = _toy_notebook(tmp_path / "07_toy.ipynb", "print(seed)")
    with pytest.raises(run.DirtyTree, match="committed code"):
        run.run("smoke", run_name="default", log_output=False, notebook_files=[nb])
    assert not (tmp_path / "results" / "default").exists()  # refused before anything is written
    assert run.main(["--params", "smoke", "--run-name", "default", "--only", "00"]) == 1  # a clear error, exit 1


@pytest.mark.notebooks
def test_each_notebook_records_the_code_digest(tmp_path, monkeypatch):
    import json

    monkeypatch.setattr(run, "run_dir", lambda name: tmp_path / "results" / name)
    nb = _toy_notebook(tmp_path / "07_toy.ipynb", "print(seed)")
    run.run("smoke", run_name="digest", log_output=False, notebook_files=[nb])
    log = json.loads((tmp_path / "results" / "digest" / "run_log.json").read_text())
    assert log["notebooks"]["07_toy.ipynb"]["code_digest"] == run.code_digest(run.config.profile_path("smoke"))
