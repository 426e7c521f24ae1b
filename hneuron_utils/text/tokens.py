"""Teacher-forced (question, response) sequences and their answer-token masks, from tokenizer offsets.

The answer tokens of a response are the tokens overlapping a character span of it: the matched gold
alias for a correct response, the whole response without trailing punctuation for a wrong one. The
span comes from the judge, so no LLM and no exact-string search is needed, and no example is lost
unless the response is empty.
"""

from __future__ import annotations

import functools
import string
from dataclasses import dataclass
from typing import Any

import torch


class SpanError(ValueError):
    """An example whose answer span maps to no token (e.g. an empty response)."""


@dataclass(frozen=True)
class TeacherForced:
    """One tokenised conversation. ``answer`` marks answer tokens; every other token is 'other'."""

    input_ids: torch.Tensor  # [T] long
    answer: torch.Tensor  # [T] bool
    response_start: int  # index of the first response token


def whole_response_span(response: str) -> tuple[int, int]:
    """The response without leading spaces and trailing punctuation/whitespace."""
    end = len(response)
    while end > 0 and (response[end - 1] in string.punctuation or response[end - 1].isspace()):
        end -= 1
    start = len(response) - len(response.lstrip())
    return (start, end) if end > start else (0, len(response))


def conversation(tokenizer: Any, prompt: str, response: str, templated: bool | None = None) -> tuple[str, int]:
    """The full teacher-forced text and the character offset where the response starts.

    With a chat template the text is ``prompt + response`` followed by what the template appends
    after an assistant message (e.g. ``<|im_end|>\n``); without one (base models, or ``templated=False``
    for a plain-text prompt), ``prompt + response``. ``templated=None``: whether the tokenizer has a template.
    """
    if templated is None:
        templated = bool(getattr(tokenizer, "chat_template", None))
    if not templated:
        return prompt + response, len(prompt)
    return prompt + response + _turn_suffix(tokenizer), len(prompt)


@functools.lru_cache(maxsize=8)
def _turn_suffix(tokenizer: Any) -> str:
    """What the chat template appends after an assistant message (e.g. '<|im_end|>\\n')."""
    probe = "XQZPROBE"
    msgs = [{"role": "user", "content": "u"}, {"role": "assistant", "content": probe}]
    full = tokenizer.apply_chat_template(msgs, tokenize=False)
    return full[full.rindex(probe) + len(probe):]


def teacher_forced(tokenizer: Any, prompt: str, response: str, span: tuple[int, int] | None,
                   templated: bool | None = None) -> TeacherForced:
    """Tokenise prompt + response (+ end of turn) and mark the tokens overlapping ``span`` of the response.

    ``span`` is a character span of ``response``; None means the whole response (minus trailing
    punctuation). ``templated``: whether ``prompt`` is a rendered chat template (None = whether the
    tokenizer has one); a plain prompt gets the tokenizer's special tokens. Raises SpanError if no
    token overlaps it.
    """
    if templated is None:
        templated = bool(getattr(tokenizer, "chat_template", None))
    text, offset = conversation(tokenizer, prompt, response, templated)
    s, e = span if span is not None else whole_response_span(response)
    s, e = s + offset, e + offset
    enc = tokenizer(text, add_special_tokens=not templated,
                    return_offsets_mapping=True)
    offs = torch.tensor(enc["offset_mapping"])
    ids = torch.tensor(enc["input_ids"])
    nonempty = offs[:, 1] > offs[:, 0]
    answer = nonempty & (offs[:, 0] < e) & (offs[:, 1] > s)
    if not bool(answer.any()):
        raise SpanError(f"no token overlaps the answer span {span} of response {response!r}")
    starts = torch.nonzero(nonempty & (offs[:, 1] > offset)).flatten()
    return TeacherForced(input_ids=ids, answer=answer, response_start=int(starts[0]) if len(starts) else len(ids))
