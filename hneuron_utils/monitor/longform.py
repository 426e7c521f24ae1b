"""Long-form answers for monitoring: long-form answers (the answer, then a short explanation) to TriviaQA questions that
notebooks 01–03 never looked at, generated with the monitor reading every token, and their outcome.

The outcome is a rule on the answer sentence (the first sentence): *correct* when it contains a usable gold
alias (the rule judge of notebook 01), *no answer* when it refuses, else *wrong* (= hallucinated). The
rule is validated against reference labels in the notebook. Step (sentence) labels do not exist for these
answers, so every step of a stream carries the stream's outcome (the cumulative label of the streaming
paper, with onset at the first step) — a stated deviation."""

from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from hneuron_utils.data import QARecord
from hneuron_utils.judges import RuleJudge, is_refusal
from hneuron_utils.monitor.live import Stream, monitored_sample
from hneuron_utils.cache import digest, stage_dir

LONGFORM_SUFFIX = " Give the answer in your first sentence, then explain it in two or three short sentences."
OUTCOMES = ("correct", "wrong", "no answer")


def unused_questions(pool: Sequence[QARecord], used_ids: set[str], n: int, seed: int) -> list[QARecord]:
    """``n`` questions of ``pool`` (a seeded draw) outside ``used_ids``; fails if fewer remain."""
    free = [r for r in pool if r.id not in used_ids]
    if len(free) < n:
        raise ValueError(f"only {len(free)} questions of the pool are unused by notebooks 01–03; asked for {n}")
    order = np.random.default_rng(seed).permutation(len(free))[:n]
    return [free[i] for i in sorted(order)]


def first_sentence(text: str) -> str:
    """The answer sentence: the text up to the first ``.``, ``!`` or ``?`` followed by whitespace (or all)."""
    m = re.search(r"[.!?](\s|$)", text.strip())
    return text.strip()[: m.end()].strip() if m else text.strip()


def outcome(question: str, text: str, answers: Sequence[str], judge: Any = None) -> str:
    """``correct`` / ``wrong`` / ``no answer`` for a long-form answer, from its first sentence."""
    judge = judge or RuleJudge()
    first = first_sentence(text)
    if not first:
        return "no answer"
    v = judge.judge(question, first, answers)
    if v.correct:
        return "correct"
    return "no answer" if is_refusal(first) else "wrong"


def split(ids: Sequence[str], train_fraction: float, seed: int) -> np.ndarray:
    """A seeded split by question: True = training question."""
    if not 0 < train_fraction < 1:
        raise ValueError("train_fraction must be in (0, 1)")
    rng = np.random.default_rng(seed)
    is_train = np.zeros(len(ids), dtype=bool)
    is_train[rng.permutation(len(ids))[: int(round(train_fraction * len(ids)))]] = True
    return is_train


def cached_streams(loaded: Any, records: Sequence[QARecord], prompts: Sequence[str], flat: Sequence[int],
                   resid_layer: int | None, *, sampling: Any, seed: int, batch_size: int, key: dict,
                   name: str = "streams", chunk: int = 96, guard: Any = None) -> list[Stream]:
    """:func:`monitored_sample` on every prompt, saved ``chunk`` questions at a time under a stage folder
    keyed by ``key`` plus the prompts, neurons, layer, decoding settings and seed (resumable)."""
    from hneuron_utils.progress import bar

    d = stage_dir(name, {**key, "prompts": digest(list(prompts)), "flat": [int(f) for f in flat],
                         "resid_layer": resid_layer, "sampling": repr(sampling), "seed": seed})
    out: list[Stream] = []
    chunks = range(0, len(prompts), chunk)
    for c in bar(chunks, show=len(chunks) >= 2, desc=name):
        path = d / f"chunk{c // chunk:04d}.pt"
        if not path.exists():
            got = monitored_sample(loaded, prompts[c:c + chunk], flat, sampling, seed=seed,
                                   keys=[r.id for r in records[c:c + chunk]], resid_layer=resid_layer,
                                   guard=guard, batch_size=batch_size, progress=False)
            tmp = path.with_suffix(".tmp")
            torch.save([s.to_arrays() for s in got], tmp)
            tmp.replace(path)
        out += [Stream.from_arrays(s) for s in torch.load(path, weights_only=False)]
    return out


def stream_table(records: Sequence[QARecord], streams: Sequence[Stream], is_train: np.ndarray) -> pd.DataFrame:
    """One row per question: id, split, question, answers, text, tokens, steps, cut (hit the token cap),
    outcome and hallucinated (1 wrong / 0 correct / NaN no answer)."""
    rows = []
    for r, s, tr in zip(records, streams, is_train):
        o = outcome(r.question, s.text, r.answers)
        rows.append({"id": r.id, "split": "train" if tr else "test", "question": r.question,
                     "answers": list(r.answers), "text": s.text, "tokens": len(s.token_ids),
                     "steps": len(s.spans()), "cut": not s.stopped, "outcome": o,
                     "hallucinated": {"correct": 0.0, "wrong": 1.0}.get(o, np.nan)})
    return pd.DataFrame(rows)


def random_neurons(n_neurons: int, exclude: Sequence[int], k: int, seed: int) -> list[int]:
    """``k`` distinct flat neuron indices drawn (seeded) from all neurons but ``exclude``: the control set."""
    rng = np.random.default_rng(seed)
    ex = set(int(e) for e in exclude)
    out: list[int] = []
    while len(out) < k:
        f = int(rng.integers(0, n_neurons))
        if f not in ex and f not in out:
            out.append(f)
    return out


def inputs(loaded: Any, pool: Sequence[QARecord], used_ids: set[str], h_flat: Sequence[int], n: int, *, seed: int,
           suffix: str = LONGFORM_SUFFIX) -> tuple[list[QARecord], list[str], list[int]]:
    """The questions (unused by 01–03), their long-form prompts, and the neurons the monitor reads: the
    H-neurons, then as many random neurons (the control)."""
    from hneuron_utils.text.generation import chat_prompt

    records = unused_questions(pool, used_ids, n, seed)
    prompts = [chat_prompt(loaded.tokenizer, r.question.strip() + suffix) for r in records]
    flat = [int(f) for f in h_flat] + random_neurons(loaded.n_layers * loaded.d_ff, h_flat, len(h_flat), seed)
    return records, prompts, flat


def probe_key(probe: Any) -> str:
    """A digest of a fitted stream probe's numbers (keys the guarded streams' cache)."""
    import hashlib

    h = hashlib.sha256()
    for a in (probe.mean, probe.std, probe.step_w, probe.prefix_w, np.array([probe.step_b, probe.prefix_b])):
        h.update(np.ascontiguousarray(np.asarray(a, dtype=np.float64)).tobytes())
    return h.hexdigest()[:16]
