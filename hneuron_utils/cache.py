"""Disk-cached, resumable stages.

A stage's output lives in ``<cache_root>/stages/<name>/<key>/`` where ``key`` is a hash of every
parameter that changes the output (model, dtype, decoding settings, seed, the exact inputs ...).
Change any of them and the stage recomputes into a new folder; re-run with the same ones and it
reuses what is there. Work is saved in small pieces as it goes (one JSON line per item, or one
shard per chunk, each written atomically), so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from hneuron_utils.paths import cache_root


def digest(obj: Any, n: int = 16) -> str:
    """A stable hex digest of a JSON-serialisable object (dict keys sorted)."""
    blob = json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


def file_digest(path: Path | str, n: int = 16) -> str:
    """A hex digest of a file's bytes (for recording which version of an input a notebook read)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:n]


def stage_dir(name: str, key_params: dict[str, Any]) -> Path:
    """The folder of stage ``name`` for these parameters; writes ``params.json`` for the record."""
    d = cache_root() / "stages" / name / digest(key_params)
    d.mkdir(parents=True, exist_ok=True)
    p = d / "params.json"
    if not p.exists():
        _atomic_write(p, json.dumps(key_params, sort_keys=True, indent=1, default=str))
    return d


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class JsonlStore:
    """Results keyed by item id, appended one JSON line per item (flushed and fsynced per batch).

    A line cut short by an interruption is ignored on reading, so the item is simply redone.
    """

    def __init__(self, path: Path):
        self.path = path
        self.data: dict[str, Any] = {}
        if path.exists():
            with open(path, encoding="utf-8") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a partial last line from an interrupted run
                    self.data[rec["id"]] = rec["value"]

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def add(self, items: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            for k, v in items.items():
                f.write(json.dumps({"id": k, "value": v}, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.data.update(items)


def cached_map(name: str, key_params: dict[str, Any], ids: Sequence[str],
               compute: Callable[[list[str]], dict[str, Any]], chunk: int = 64,
               *, progress: Callable[[Iterable], Iterable] | None = None) -> dict[str, Any]:
    """``{id: compute([...])[id]}`` for every id, computing only the ids not yet stored, ``chunk`` at a
    time, each chunk saved as soon as it is done. Returns the values for ``ids``."""
    store = JsonlStore(stage_dir(name, key_params) / "items.jsonl")
    todo = [i for i in dict.fromkeys(ids) if i not in store]
    chunks = [todo[j:j + chunk] for j in range(0, len(todo), chunk)]
    for c in (progress(chunks) if progress else chunks):
        got = compute(c)
        missing = [i for i in c if i not in got]
        if missing:
            raise RuntimeError(f"stage {name}: compute() returned no value for {missing[:5]}")
        store.add({i: got[i] for i in c})
    return {i: store[i] for i in ids}
