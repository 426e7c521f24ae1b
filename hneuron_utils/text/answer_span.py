"""The answer span of a response: which characters state the answer, found the same way for every response.

The paper reads CETT over "the answer tokens" of each response, marked for correct and wrong responses
alike (by an LLM). A span that depends on the verdict — the matched gold alias for a correct response, the
whole response for a wrong one — makes the answer tokens of the two classes differ in length before any
neuron is read. The rules here take only the question and the response, never the gold answers:

- ``answer_phrase`` (default): the response's answer phrase. The first sentence (or line) of the
  response, without a leading restatement of the question that ends in a linking word ("The currency of
  Greece before the Euro was | the drachma"), without a trailing restatement ("The River Thames | runs
  through the city of London"), without wrapping quotes and trailing punctuation. When nothing is left,
  the whole response.
- ``whole_response``: the whole response (minus edge whitespace and trailing punctuation), for both classes.
- ``alias_or_whole``: the workbook's earlier rule, kept for comparison: the matched gold alias when the
  response is judged correct, else the whole response. It differs by class.
"""

from __future__ import annotations

import re
import string
from typing import Any, Sequence

import numpy as np
import pandas as pd

SPAN_RULES = ("answer_phrase", "whole_response", "alias_or_whole")

# Words that carry no answer: articles, prepositions, pronouns, auxiliaries and the words a response uses to
# restate a question or frame its answer ("better known as", "the answer is", "the sequence you described").
_FUNCTION = frozenset("""
a an the of in on at to for from by with as and or into onto about than
is was are were be been being am 's it its it's this that these those there their his her he she they them
which who whom whose what where when why how
known called named also better commonly usually often originally located found situated
has had have did does do
i you your we our my me think believe answer correct final
described mention mentioned referring refer refers asking asked question
""".split())
# A leading restatement is removed only when it holds one of these: it then ends where the answer starts.
_LINK = frozenset("is was are were be been being am called named known as means refers".split())
_ARTICLES = frozenset("a an the".split())
_WORD = re.compile(r"\S+")
_EDGE = string.punctuation + "‘’“”«»"


def _norm(word: str) -> str:
    return word.strip(_EDGE).lower().replace("’", "'")


def _stems(text: str) -> set[str]:
    return {w for w in (_norm(x) for x in re.split(r"[\s\-/]+", text)) if w}


def _in_question(word: str, question_words: set[str]) -> bool:
    """A word restates the question if it is a function word or a question word (up to a short suffix:
    'blows' ~ 'blow', 'named' ~ 'name')."""
    w = _norm(word)
    if not w or w in _FUNCTION:
        return True
    parts = [x for x in re.split(r"[-/]+", w) if x]
    if len(parts) > 1:
        return all(_in_question(x, question_words) for x in parts)
    if w.endswith("'s"):
        w = w[:-2]
    for q in question_words:
        if w == q or (min(len(w), len(q)) >= 4 and (w.startswith(q) or q.startswith(w))
                      and abs(len(w) - len(q)) <= 3):
            return True
    return False


def first_sentence(response: str) -> tuple[int, int]:
    """The character span of the response's first sentence: up to the first line break after some content,
    or the first '.', '!' or '?' followed by a space and a capital (or quote) once the sentence has at
    least three words (so 'St. David' and 'Washington, D.C.' stay whole)."""
    start = len(response) - len(response.lstrip())
    end = len(response)
    nl = re.search(r"\S\s*\n", response[start:])
    if nl:
        end = start + nl.start() + 1
    for m in re.finditer(r"[.!?](?=\s+[A-Z\"'“‘])", response[start:end]):
        if len(response[start:start + m.start()].split()) >= 3:
            end = start + m.start() + 1
            break
    return start, end


def _trim(response: str, s: int, e: int) -> tuple[int, int]:
    """Drop edge whitespace, trailing punctuation and wrapping quotes of response[s:e]."""
    while True:
        before = (s, e)
        while s < e and response[s].isspace():
            s += 1
        while e > s and (response[e - 1].isspace() or response[e - 1] in ".,;:!?"):
            e -= 1
        if e - s >= 2 and response[s] in "\"'“‘«" and response[e - 1] in "\"'”’»":
            s, e = s + 1, e - 1
        elif s < e and response[s] in "\"“«" and response[s + 1:e].count(response[s]) == 0:
            s += 1
        elif s < e and response[e - 1] in "\"”»" and response[s:e - 1].count(response[e - 1]) == 0:
            e -= 1
        if (s, e) == before:
            return s, e


def answer_phrase_span(question: str, response: str) -> tuple[int, int]:
    """The character span of the answer phrase of ``response`` (see the module docstring); never empty for a
    non-empty response."""
    from hneuron_utils.text.tokens import whole_response_span

    whole = whole_response_span(response)
    s, e = first_sentence(response)
    words = [(m.start() + s, m.end() + s) for m in _WORD.finditer(response[s:e])]
    if not words:
        return whole
    qw = _stems(question)
    restates = [_in_question(response[a:b], qw) for a, b in words]
    # a leading restatement: the longest run of restating words that holds a linking word; articles at its
    # end belong to the answer ("was | the drachma")
    lead = 0
    while lead < len(words) and restates[lead]:
        lead += 1
    if not any(_norm(response[a:b]) in _LINK for a, b in words[:lead]):
        lead = 0
    while lead > 0 and _norm(response[words[lead - 1][0]:words[lead - 1][1]]) in _ARTICLES:
        lead -= 1
    # a trailing restatement: at least three restating words, one of them a word of the question itself
    tail = len(words)
    while tail > lead and restates[tail - 1]:
        tail -= 1
    rest = words[tail:]
    if len(rest) < 3 or all(_norm(response[a:b]) in _FUNCTION for a, b in rest):
        tail = len(words)
    if tail <= lead:
        return whole
    span = _trim(response, words[lead][0], words[tail - 1][1])
    return span if span[1] > span[0] else whole


def answer_span(rule: str, question: str, response: str, alias_span: Sequence[int] | None,
                correct: bool) -> tuple[int, int] | None:
    """The answer span of a response under ``rule`` (one of :data:`SPAN_RULES`); None = the whole response.

    ``alias_span`` and ``correct`` (the judge's matched alias and verdict) are read only by the earlier
    rule ``alias_or_whole``."""
    if rule not in SPAN_RULES:
        raise ValueError(f"answer_span must be one of {SPAN_RULES}, got {rule!r}")
    if rule == "alias_or_whole":
        has_alias = isinstance(alias_span, (list, tuple)) and len(alias_span) == 2
        return (int(alias_span[0]), int(alias_span[1])) if correct and has_alias else None
    if rule == "whole_response" or not response.strip():
        return None
    return answer_phrase_span(question, response)


def answer_token_indices(tokenizer: Any, prompt: str, response: str, span: Sequence[int] | None,
                         *, templated: bool | None = None) -> frozenset[int]:
    """The positions of the answer tokens of ``response`` (teacher-forced after ``prompt``) for a character
    span (None = the whole response)."""
    from hneuron_utils.text.tokens import teacher_forced

    tf = teacher_forced(tokenizer, prompt, response, tuple(span) if span is not None else None, templated=templated)
    return frozenset(int(i) for i in tf.answer.nonzero().flatten())


def span_agreement(tokenizer: Any, rows: pd.DataFrame, *, rules: Sequence[str] = SPAN_RULES,
                   n_boot: int = 1000, seed: int = 0, templated: bool | None = None) -> pd.DataFrame:
    """Token-level agreement of each span rule with reference spans, per class.

    ``rows``: one reference-labelled response per row with ``question``, ``response``, ``prompt`` (the
    rendered prompt it answers), ``class``, ``span`` (the reference character span; rows with None — the
    response states no answer — are left out), and for the earlier rule ``alias_span`` and ``correct``.
    Returns one row per rule × class: n, the share of responses whose answer tokens equal the reference's
    exactly (Wilson interval), the mean token Dice overlap (bootstrap interval) and the mean answer-token
    counts of the rule and of the reference."""
    from hneuron_utils.stats import mean_with_ci, wilson_interval

    for r in rules:
        if r not in SPAN_RULES:
            raise ValueError(f"unknown span rule {r!r}; valid: {SPAN_RULES}")
    missing = {"question", "response", "prompt", "class", "span"} - set(rows.columns)
    if missing:
        raise ValueError(f"reference rows lack the columns {sorted(missing)}")
    rows = rows[rows["span"].notna()]
    if rows.empty:
        raise ValueError("no reference row has a span")
    out = []
    for rule in rules:
        per_class: dict[str, list[tuple[bool, float, int, int]]] = {}
        for r in rows.to_dict("records"):
            ref = answer_token_indices(tokenizer, r["prompt"], r["response"], r["span"], templated=templated)
            got_span = answer_span(rule, r["question"], r["response"], r.get("alias_span"), bool(r.get("correct", False)))
            got = answer_token_indices(tokenizer, r["prompt"], r["response"], got_span, templated=templated)
            dice = 2 * len(ref & got) / (len(ref) + len(got))
            per_class.setdefault(r["class"], []).append((ref == got, dice, len(got), len(ref)))
        for cls, vals in sorted(per_class.items()):
            n = len(vals)
            k = sum(v[0] for v in vals)
            lo, hi = wilson_interval(k, n)
            d = mean_with_ci([v[1] for v in vals], n_boot=n_boot, seed=seed)
            out.append({"rule": rule, "class": cls, "n": n, "exact": k / n, "exact_lo": lo, "exact_hi": hi,
                        "dice": d[0], "dice_lo": d[1], "dice_hi": d[2],
                        "rule_tokens": float(np.mean([v[2] for v in vals])),
                        "reference_tokens": float(np.mean([v[3] for v in vals]))})
    return pd.DataFrame(out)
