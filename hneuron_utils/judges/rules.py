"""Judging answers: the paper's rule judge (normalised alias substring match + refusal phrases).

Every judge implements :class:`Judge` — ``judge(question, response, answers) -> Verdict`` — so an LLM
judge (a local model, or any OpenAI-compatible endpoint) can replace the rule judge in any notebook.
The rule judge also returns the character span of the matched alias in the raw response, which
notebook 01 turns into answer tokens (no LLM and no exact-string search that can fail).
"""

from __future__ import annotations

import functools
import re
import string
from dataclasses import dataclass
from typing import Protocol, Sequence

# Phrases, not single words: "cannot" alone also matches ordinary answers (measured on this machine; see the README's Models section).
REFUSAL_PHRASES: tuple[str, ...] = (
    "i don't know", "i do not know", "don't know", "do not know", "not provided", "no information",
    "i cannot answer", "i can't answer", "i cannot provide", "i can't provide", "i'm not sure",
    "i am not sure", "i'm unable to", "i am unable to", "unable to provide", "unable to answer",
    "unable to determine", "cannot be determined", "cannot determine", "no answer",
)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_with_map(text: str) -> tuple[str, list[int]]:
    """SQuAD normalisation (lowercase, drop punctuation and articles, collapse spaces) and, for every
    character of the result, the index of the raw character it came from."""
    chars = [(c.lower(), i) for i, c in enumerate(text) if c not in _PUNCT]
    low = "".join(c for c, _ in chars)
    drop = set()
    for m in _ARTICLES.finditer(low):
        drop.update(range(m.start(), m.end()))
    chars = [ci for k, ci in enumerate(chars) if k not in drop]
    out: list[tuple[str, int]] = []
    for c, i in chars:  # collapse whitespace runs into one space, strip both ends
        if c.isspace():
            if out and out[-1][0] != " ":
                out.append((" ", i))
        else:
            out.append((c, i))
    while out and out[-1][0] == " ":
        out.pop()
    return "".join(c for c, _ in out), [i for _, i in out]


def normalize(text: str) -> str:
    return normalize_with_map(text)[0]


def is_refusal(response: str) -> bool:
    low = response.lower().replace("’", "'")
    return any(p in low for p in REFUSAL_PHRASES)


@functools.lru_cache(maxsize=4096)
def _targets(question: str, answers: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(alias, normalised alias) for every usable alias; cached, as K samples share one question."""
    q = normalize(question)
    out: dict[str, str] = {}
    for a in answers:
        na = normalize(a)
        if na and na not in q:
            out.setdefault(a, na)
    return tuple(out.items())


def usable_aliases(question: str, answers: Sequence[str]) -> list[str]:
    """Aliases that can be judged by substring match: non-empty after normalisation and not already
    contained in the question (a leaked alias scores correct whatever the model knows)."""
    return [a for a, _ in _targets(question, tuple(answers))]


@dataclass(frozen=True)
class Verdict:
    """A judged response. ``span`` is the raw character span of the matched alias, if any."""

    correct: bool
    refusal: bool
    alias: str | None = None
    span: tuple[int, int] | None = None


class Judge(Protocol):
    """Anything that can judge a response to a question with gold answers."""

    def judge(self, question: str, response: str, answers: Sequence[str]) -> Verdict: ...


class RuleJudge:
    """The official default: any usable gold alias is a substring of the response after SQuAD
    normalisation; refusal phrases flag refusals. Longest matching alias wins (best span)."""

    name = "rule"

    def judge(self, question: str, response: str, answers: Sequence[str]) -> Verdict:
        refusal = is_refusal(response)
        norm, idx = normalize_with_map(response)
        best: tuple[int, str, tuple[int, int]] | None = None
        for a, na in _targets(question, tuple(answers)):
            pos = norm.find(na)
            if pos >= 0 and (best is None or len(na) > best[0]):
                best = (len(na), a, (idx[pos], idx[pos + len(na) - 1] + 1))
        if best is None:
            return Verdict(correct=False, refusal=refusal)
        return Verdict(correct=True, refusal=refusal, alias=best[1], span=best[2])
