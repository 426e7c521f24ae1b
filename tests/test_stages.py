import json

import pytest

from hneuron_utils.workbook import stages


def test_cached_map_computes_once_and_resumes_after_a_torn_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HNEURON_CACHE", str(tmp_path))
    calls = []

    def compute(ids):
        calls.append(list(ids))
        return {i: i.upper() for i in ids}

    key = {"model": "m", "seed": 1}
    assert stages.cached_map("s", key, ["a", "b", "c"], compute, chunk=2) == {"a": "A", "b": "B", "c": "C"}
    assert calls == [["a", "b"], ["c"]]
    store = stages.stage_dir("s", key) / "items.jsonl"
    lines = store.read_text().splitlines()
    store.write_text("\n".join(lines[:2]) + "\n" + lines[2][:7])  # "c" torn by an interruption
    calls.clear()
    assert stages.cached_map("s", key, ["a", "b", "c", "d"], compute, chunk=2)["d"] == "D"
    assert calls == [["c", "d"]]
    assert stages.stage_dir("s", {"model": "m", "seed": 2}) != stages.stage_dir("s", key)
    assert json.loads((stages.stage_dir("s", key) / "params.json").read_text()) == key


def test_cached_map_rejects_missing_values(tmp_path, monkeypatch):
    monkeypatch.setenv("HNEURON_CACHE", str(tmp_path))
    with pytest.raises(RuntimeError):
        stages.cached_map("s", {}, ["a", "b"], lambda ids: {"a": 1})
