"""`run --fresh-stages`: an empty stage cache per notebook, merged into the real cache afterwards."""

from __future__ import annotations

import json

from hneuron_utils.workbook import run as R
from hneuron_utils.cache import JsonlStore


def test_fresh_cache_links_models_and_02s_features_then_merges(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("HNEURON_CACHE", str(root))
    (root / "gguf").mkdir(parents=True)
    (root / "models").mkdir()
    (root / "stages" / "cett" / "k02").mkdir(parents=True)
    (root / "stages" / "cett" / "k02" / "shard_0.pt").write_text("x")
    old = root / "stages" / "samples" / "s1"
    old.mkdir(parents=True)
    JsonlStore(old / "items.jsonl").add({"a": [1], "b": [1, 2]})
    run_out = tmp_path / "results"
    (run_out / "data").mkdir(parents=True)
    (run_out / "data" / "02_features.json").write_text(json.dumps({"key": "k02"}))

    fresh = R.fresh_stage_cache(run_out)
    assert (fresh / "gguf").is_symlink() and (fresh / "models").is_symlink()
    assert (fresh / "stages" / "cett" / "k02" / "shard_0.pt").read_text() == "x"
    assert not (fresh / "stages" / "samples").exists()  # nothing else: the notebook computes its own stages
    # what a notebook computes in it: a new stage, and more of an existing one
    (fresh / "stages" / "greedy" / "g1").mkdir(parents=True)
    JsonlStore(fresh / "stages" / "greedy" / "g1" / "items.jsonl").add({"q": "Paris"})
    (fresh / "stages" / "samples" / "s1").mkdir(parents=True)
    JsonlStore(fresh / "stages" / "samples" / "s1" / "items.jsonl").add({"a": [1, 2, 3], "b": [1], "c": [5]})
    assert R.merge_fresh(fresh) == 2 and not fresh.exists()
    assert JsonlStore(root / "stages" / "greedy" / "g1" / "items.jsonl").data == {"q": "Paris"}
    merged = JsonlStore(old / "items.jsonl").data
    assert merged == {"a": [1, 2, 3], "b": [1, 2], "c": [5]}  # more samples win; fewer never replace
    assert (root / "stages" / "cett" / "k02" / "shard_0.pt").exists()  # the linked stage is untouched


def test_report_shows_the_latest_fresh_time():
    from hneuron_utils.workbook.report import fresh_times

    log = {"notebooks": {"04.ipynb": {"status": "ok", "seconds": 60}},
           "earlier": [{"notebook": "04.ipynb", "status": "ok", "seconds": 3000, "stage cache": R.FRESH_NOTE},
                       {"notebook": "05.ipynb", "status": "failed", "seconds": 10, "stage cache": R.FRESH_NOTE}]}
    assert {k: v["seconds"] for k, v in fresh_times(log).items()} == {"04.ipynb": 3000}
    log["notebooks"]["04.ipynb"]["stage cache"] = R.FRESH_NOTE
    assert fresh_times(log)["04.ipynb"]["seconds"] == 60


def test_fresh_cache_for_02_itself_and_a_first_run(tmp_path, monkeypatch):
    root = tmp_path / "cache"  # a first run: nothing exists yet
    monkeypatch.setenv("HNEURON_CACHE", str(root))
    run_out = tmp_path / "results"
    (run_out / "data").mkdir(parents=True)
    (run_out / "data" / "02_features.json").write_text(json.dumps({"key": "k02"}))
    fresh = R.fresh_stage_cache(run_out, "02_extract_cett.ipynb")
    assert not (fresh / "stages").exists()  # 02 makes the features: its own run must not find them
    (fresh / "models" / "m.bin").write_text("w")  # a download during the run lands in the real cache
    R.merge_fresh(fresh)
    assert (root / "models" / "m.bin").read_text() == "w"


def test_merge_keeps_cached_samples_that_a_fresh_run_drew_differently(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("HNEURON_CACHE", str(root))
    old = root / "stages" / "samples" / "s1"
    old.mkdir(parents=True)
    JsonlStore(old / "items.jsonl").add({"a": ["x", "y"]})
    with open(old / "items.jsonl", "a") as f:
        f.write('{"id": "cut')  # an interrupted write
    fresh = R.fresh_stage_cache(tmp_path / "results")
    (fresh / "stages" / "samples" / "s1").mkdir(parents=True)
    JsonlStore(fresh / "stages" / "samples" / "s1" / "items.jsonl").add({"a": ["x", "z", "w"], "b": ["v"]})
    (fresh / "stages" / "samples" / "s1" / "items.jsonl.tmp123").write_text("partial")
    R.merge_fresh(fresh)
    assert JsonlStore(old / "items.jsonl").data == {"a": ["x", "y"], "b": ["v"]}
    assert not (old / "items.jsonl.tmp123").exists()
