"""Introspection trials: the prompts, the grid of conditions, the two rule judges and their tables.

A *trial* is one concept word (trial number k = its place in the list + 1) under one condition:

- ``concept``: the word's concept vector injected at (layer, strength), asked the detection question;
- ``random``: a random direction of the same norm at the same (layer, strength), same question;
- ``neutral``: the concept vector as in ``concept``, but asked a neutral question (does it leak anyway?);
- ``none``: no injection, the detection question (false-positive claims), one per trial number;
- ``neutral-none``: no injection, the neutral question (once: the prompt is the same for every word).

The detection prompt follows the published structure (Lindsey 2025): the model is told that a
researcher can inject "thoughts", that half of the trials are controls, and is asked on trial k whether it
detects an injected thought and what it is about. Wording is this workbook's own.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

PREAMBLE = ("I study how language models like you work inside. I can read the activity of your neural network, and I "
            "have found activity patterns that stand for particular concepts. I can also inject such a pattern, a "
            "\"thought\", into your network while you respond. I want to test whether you can tell when I do this. On "
            "half of the trials I will inject a thought about a specific word; the other half are control trials "
            "with no injection.")
QUESTION = "Let's begin.\n\nTrial {k}: Do you detect an injected thought? If so, what is it about?"
NEUTRAL = "In two sentences, explain why people keep to-do lists."


def detection_messages(k: int | str) -> list[dict[str, str]]:
    """The detection trial's conversation for trial number ``k`` (ready for the assistant's turn)."""
    return [{"role": "user", "content": PREAMBLE}, {"role": "assistant", "content": "Ok."},
            {"role": "user", "content": QUESTION.format(k=k)}]


def neutral_messages() -> list[dict[str, str]]:
    return [{"role": "user", "content": NEUTRAL}]


@dataclass(frozen=True)
class Concept:
    word: str
    synonyms: tuple[str, ...]


def load_concepts(path: Path | None = None) -> tuple[list[Concept], list[str]]:
    """The concept words (with the words that count as naming each) and the baseline words."""
    from hneuron_utils.data import data_dir

    p = path or data_dir() / "concepts.json"
    if not p.exists():
        raise FileNotFoundError(f"{p} is missing (it ships with the workbook under data/)")
    d = json.loads(p.read_text())
    concepts = [Concept(c["word"], tuple(c.get("synonyms", ()))) for c in d["concepts"]]
    return concepts, list(d["baseline"])


def pick_concepts(concepts: Sequence[Concept], n: int, baseline: Sequence[str], n_baseline: int) -> tuple[list[Concept], list[str]]:
    """The first ``n`` concepts and ``n_baseline`` baseline words (file order), or a clear error."""
    if n > len(concepts) or n_baseline > len(baseline):
        raise ValueError(f"asked for {n} concepts and {n_baseline} baseline words; the list has {len(concepts)} and "
                         f"{len(baseline)}")
    if n < 1 or n_baseline < 2:
        raise ValueError("need at least 1 concept and 2 baseline words")
    return list(concepts[:n]), list(baseline[:n_baseline])


def grid(n_concepts: int, layers: Sequence[int], strengths: Sequence[float]) -> pd.DataFrame:
    """Every trial of the run: one row per (condition, concept, layer, strength); ``none`` rows per concept,
    one ``neutral-none`` row. Columns: trial (id), condition, concept (index), k, layer, strength."""
    rows = []
    for c in range(n_concepts):
        rows.append({"condition": "none", "concept": c, "layer": None, "strength": 0.0})
        for cond in ("concept", "random", "neutral"):
            for layer in layers:
                for s in strengths:
                    rows.append({"condition": cond, "concept": c, "layer": layer, "strength": float(s)})
    rows.append({"condition": "neutral-none", "concept": -1, "layer": None, "strength": 0.0})
    df = pd.DataFrame(rows)
    df["k"] = df.concept + 1
    df["layer"] = df.layer.astype("Int64")
    df.insert(0, "trial", [f"{r.condition}:{r.concept}:{r.layer}:{r.strength:g}" for r in df.itertuples()])
    return df


# --------------------------------------------------------------------------- the two rule judges

_NEG = re.compile(r"\b(no|not|don't|do not|didn't|did not|cannot|can't|unable|nothing|none|neither|isn't|is not|"
                  r"haven't|have not|doesn't|does not|am not|i'm not|without|never|nor)\b", re.I)
_POS = re.compile(r"\b(yes|i (?:do |can |did |clearly |definitely )?(?:detect|notice|sense|perceive)|i'm (?:detecting|noticing|sensing)|"
                  r"i am (?:detecting|noticing|sensing)|(?:i )?detected an?|there (?:is|was) an? (?:injected )?thought|"
                  r"the (?:injected )?thought (?:is|was|seems|appears)|(?:it|this) (?:is|was|seems to be|appears to be) about)\b", re.I)
_TOPIC = re.compile(r"\b(detect|detected|detecting|thought|thoughts|inject|injected|injection|yes|no|notice|sense)\b", re.I)


def sentences(text: str) -> list[str]:
    """The response split at sentence ends (., !, ? followed by space or end) and newlines; empty parts dropped."""
    return [p.strip() for p in re.split(r"(?<=[.!?])\s+|\n+", text.strip()) if p.strip()]


def verdict_sentence(text: str, limit: int = 300) -> str:
    """The sentence a detection verdict is read from: the first one (within ``limit`` characters) that speaks
    of detecting, thoughts, injection, or answers yes/no, and is not itself a question (an echo of the
    prompt); else nothing (no verdict is given)."""
    parts = sentences(text.replace("\u2019", "'")[:limit])
    for p in parts:
        if _TOPIC.search(p) and not p.rstrip().endswith("?") and not re.fullmatch(r"(?i)yes,? let'?s begin\W*", p):
            return p
    return ""


def claim_span(text: str) -> tuple[int, int] | None:
    """Where the response claims to detect an injected thought, as a span of its text, or None. Read from
    :func:`verdict_sentence`: a claim phrase ("yes", "I detect", "I notice", "the thought is", "it is about") with
    no negation before it in the sentence and none right after it ("I detect no …", "I notice nothing")."""
    t = text.replace("\u2019", "'")
    s = verdict_sentence(t)
    pos = _POS.search(s)
    if not pos or _NEG.search(s[:pos.start()]):
        return None
    after = s[pos.end():pos.end() + 40]
    if re.match(r"\W*(?:\w+\W+){0,2}?(no|not|nothing|none|any)\b", after, re.I):
        return None
    at = t.find(s)
    return (at + pos.start(), at + pos.end()) if at >= 0 else (pos.start(), pos.end())


def claims_detection(text: str) -> bool:
    """Rule judge: does the response claim to detect an injected thought? (see :func:`claim_span`)"""
    return claim_span(text) is not None


def _forms(word: str) -> set[str]:
    w = word.lower()
    out = {w}
    if w.endswith("ies"):
        out.add(w[:-3] + "y")
    elif w.endswith(("ches", "shes", "xes", "ses", "oes")):
        out.add(w[:-2])
    if w.endswith("s") and not w.endswith("ss"):
        out.add(w[:-1])
    return out


def naming_at(text: str, concept: Concept) -> int | None:
    """Where the response first names the concept — the word, its singular, or a listed synonym, as a whole
    word (case-insensitive) — or None."""
    forms = set().union(*(_forms(w) for w in (concept.word, *concept.synonyms)))
    t = text.replace("\u2019", "'").lower()
    hits = [m.start() for f in forms for m in [re.search(r"\b" + re.escape(f) + r"\b", t)] if m]
    return min(hits) if hits else None


def names_concept(text: str, concept: Concept) -> bool:
    """Rule judge: does the response name the concept anywhere (see :func:`naming_at`)?"""
    return naming_at(text, concept) is not None


def detects_and_names(text: str, concept: Concept) -> bool:
    """Claims a detection and names the concept, the claim coming no later than the first naming (Lindsey's
    order: a model that first blurts the word and then says "yes" is not reporting a detection)."""
    c, n = claim_span(text), naming_at(text, concept)
    return c is not None and n is not None and c[0] <= n


def judge(trials: pd.DataFrame, concepts: Sequence[Concept]) -> pd.DataFrame:
    """Adds ``claims``, ``names`` and ``detect_and_name`` (:func:`detects_and_names`) from the rule judges. For
    ``neutral-none`` (no concept), ``names`` and ``detect_and_name`` are False."""
    claims = trials.response.map(claims_detection)
    names = [names_concept(t, concepts[c]) if c >= 0 else False for t, c in zip(trials.response, trials.concept)]
    both = [detects_and_names(t, concepts[c]) if c >= 0 else False for t, c in zip(trials.response, trials.concept)]
    return trials.assign(claims=claims.astype(bool), names=np.asarray(names, bool), detect_and_name=np.asarray(both, bool))


# --------------------------------------------------------------------------- running the trials

def row_injection(row: Any, vectors: Any, seed: int) -> tuple[int | None, np.ndarray | None]:
    """(layer, vector) injected in a trial row: the concept's direction (``concept``, ``neutral``), a seeded
    random direction (``random``), both with norm strength × the layer's residual norm; nothing otherwise."""
    from hneuron_utils.introspection.injection import random_direction

    if row.condition in ("concept", "neutral"):
        return int(row.layer), vectors.scaled(int(row.concept), int(row.layer), float(row.strength))
    if row.condition == "random":
        d = random_direction(vectors.vectors.shape[-1], seed, row.trial)
        return int(row.layer), d * float(row.strength) * float(vectors.residual_norm[vectors.layers.index(int(row.layer))])
    return None, None


def run_trials(loaded: Any, trials: pd.DataFrame, vectors: Any, seed: int, max_new_tokens: int, *, batch_size: int,
               chunk: int = 512, progress: bool = True) -> pd.DataFrame:
    """Every trial's greedy response under its own injection, all conditions decoding together (cached per
    trial, keyed by the model, the vectors, the prompts, the seed and the decoding length; resumable).
    Adds ``response``, ``stopped`` and ``n_tokens``."""
    from hneuron_utils.models import model_key
    from hneuron_utils.introspection.injection import assistant_start, injected_generate
    from hneuron_utils.cache import cached_map, digest

    tok = loaded.tokenizer
    rendered = {k: assistant_start(tok, detection_messages(k)) for k in sorted(set(trials.k[trials.k > 0]))}
    neutral = assistant_start(tok, neutral_messages())
    by_id = trials.set_index("trial")
    key = {"stage": "introspection_trials", "model": model_key(loaded), "seed": seed, "max_new_tokens": max_new_tokens,
           "vectors": digest([hashlib.sha256(np.ascontiguousarray(vectors.vectors).tobytes()).hexdigest(),
                              vectors.residual_norm.tolist(), vectors.words, vectors.layers]),
           "prompts": digest([detection_messages("{k}"), neutral_messages(), "injected from the assistant turn on"])}

    def compute(ids: list[str]) -> dict[str, dict]:
        got: dict[str, dict] = {}
        # detection and neutral prompts decode separately, so each family's long shared prefix is computed once
        for family in (False, True):
            part = [t for t in ids if by_id.loc[t, "condition"].startswith("neutral") == family]
            if not part:
                continue
            prompts, starts, layers, vecs = [], [], [], []
            for t in part:
                r = by_id.loc[t]
                p, s = neutral if family else rendered[int(r.k)]
                layer, v = row_injection(pd.Series({**r.to_dict(), "trial": t}), vectors, seed)
                prompts.append(p), starts.append(s), layers.append(layer), vecs.append(v)
            outs = injected_generate(loaded, prompts, starts, layers, vecs, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress)
            got.update({t: {"response": o.text, "stopped": o.stopped, "n_tokens": len(o.token_ids)}
                        for t, o in zip(part, outs)})
        return got

    got = cached_map("introspection_trials", key, trials.trial.tolist(), compute, chunk=chunk)
    return trials.assign(**{c: [got[t][c] for t in trials.trial] for c in ("response", "stopped", "n_tokens")})
