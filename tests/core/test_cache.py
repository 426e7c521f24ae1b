import json

import pytest

from hneuron_utils import cache


def test_cached_map_computes_once_and_resumes_after_a_torn_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HNEURON_CACHE", str(tmp_path))
    calls = []

    def compute(ids):
        calls.append(list(ids))
        return {i: i.upper() for i in ids}

    key = {"model": "m", "seed": 1}
    assert cache.cached_map("s", key, ["a", "b", "c"], compute, chunk=2) == {"a": "A", "b": "B", "c": "C"}
    assert calls == [["a", "b"], ["c"]]
    store = cache.stage_dir("s", key) / "items.jsonl"
    lines = store.read_text().splitlines()
    store.write_text("\n".join(lines[:2]) + "\n" + lines[2][:7])  # "c" torn by an interruption
    calls.clear()
    assert cache.cached_map("s", key, ["a", "b", "c", "d"], compute, chunk=2)["d"] == "D"
    assert calls == [["c", "d"]]
    assert cache.stage_dir("s", {"model": "m", "seed": 2}) != cache.stage_dir("s", key)
    assert json.loads((cache.stage_dir("s", key) / "params.json").read_text()) == key


def test_cached_map_rejects_missing_values(tmp_path, monkeypatch):
    monkeypatch.setenv("HNEURON_CACHE", str(tmp_path))
    with pytest.raises(RuntimeError):
        cache.cached_map("s", {}, ["a", "b"], lambda ids: {"a": 1})
