"""`run --fresh-stages`: an empty stage cache per notebook, merged into the real cache afterwards."""

from __future__ import annotations

import json

from hneuron_utils.workbook import run as R
from hneuron_utils.workbook.stages import JsonlStore


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
