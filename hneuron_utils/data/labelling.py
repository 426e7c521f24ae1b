"""Labelling questions by consistency: sample answers, judge them, keep consistent questions, split, count.

The paper's protocol (the paper and its official code): K samples per TriviaQA question; all K correct → faithful, all K wrong
(and none refusing) → hallucinated; the most frequent response is the example's response. Every
deviation is an argument: the consistency thresholds, the leak policy, and an optional greedy screen
that samples K only for questions that can still pass the rule.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from hneuron_utils.data import QARecord
from hneuron_utils.text.generation import PAPER_SUFFIX, Sampling, question_prompt, sample_many
from hneuron_utils.judges import Judge, normalize, usable_aliases, Verdict
from hneuron_utils.cache import cached_map
from hneuron_utils.models.loading import model_key

LEAK_POLICIES = ("drop_aliases", "drop_questions", "keep")
FAITHFUL, HALLUCINATED = 0, 1  # probe labels: 1 = hallucinated


@dataclass(frozen=True)
class Rule:
    """Consistency rule: ≥ faithful_min of K correct → faithful; ≤ hallucinated_max → hallucinated."""

    n_samples: int
    faithful_min: int
    hallucinated_max: int

    def __post_init__(self) -> None:
        if not 0 <= self.hallucinated_max < self.faithful_min <= self.n_samples:
            raise ValueError(f"need 0 <= hallucinated_max < faithful_min <= n_samples, got {self}")

    def label(self, n_correct: int, n_refused: int, n_empty: int) -> str:
        """'faithful', 'hallucinated', 'mixed' or 'dropped' (a refusal or an empty answer among the K)."""
        if n_refused or n_empty:
            return "dropped"
        if n_correct >= self.faithful_min:
            return "faithful"
        if n_correct <= self.hallucinated_max:
            return "hallucinated"
        return "mixed"

    @property
    def is_papers(self) -> bool:
        """The paper's rule: 10 samples, faithful = 10 of 10 correct, hallucinated = 0 of 10."""
        return (self.n_samples, self.faithful_min, self.hallucinated_max) == (10, 10, 0)

    def describe(self) -> str:
        """One line naming the rule and whether it is the paper's."""
        return (f"consistency rule: faithful if ≥ {self.faithful_min}/{self.n_samples} correct, hallucinated if "
                f"≤ {self.hallucinated_max}/{self.n_samples}" +
                ("  (the paper's rule)" if self.is_papers else "  (RELAXED: not the paper's rule)"))


def apply_leak_policy(records: Sequence[QARecord], policy: str) -> tuple[list[QARecord], dict[str, int]]:
    """Handle gold aliases already contained in the question (a substring judge calls those correct
    whatever the model knows). 'drop_aliases' removes such aliases (and questions left with none),
    'drop_questions' removes the questions, 'keep' does nothing (the paper)."""
    if policy not in LEAK_POLICIES:
        raise ValueError(f"leak_policy must be one of {LEAK_POLICIES}, got {policy!r}")
    out, leaked, dropped = [], 0, 0
    for r in records:
        q = normalize(r.question)
        bad = [a for a in r.answers if normalize(a) and normalize(a) in q]
        leaked += bool(bad)
        if policy == "keep" or not bad:
            out.append(r)
        elif policy == "drop_questions":
            dropped += 1
        else:
            good = usable_aliases(r.question, r.answers)
            if good:
                out.append(QARecord(r.id, r.question, tuple(good), r.source, r.meta))
            else:
                dropped += 1
    return out, {"questions": len(records), "with a leaked alias": leaked, "dropped": dropped, "kept": len(out)}




def _style_key(style: str, system: str | None = None) -> dict[str, str]:
    """The prompt's part of a stage key (empty for 'chat' without a system turn, so the paper-prompt
    caches keep their keys)."""
    return ({} if style == "chat" else {"style": style}) | ({"system": system} if system else {})


def _generate_kw(style: str) -> dict[str, bool]:
    """How :func:`sample_many` treats a prompt style (base: plain text, stop at the first newline)."""
    return {"templated": style == "chat", "stop_at_newline": style == "base"}


def greedy_answers(loaded: Any, records: Sequence[QARecord], max_new_tokens: int, batch_size: int,
                   suffix: str = PAPER_SUFFIX, *, progress: bool = True, style: str = "chat",
                   system: str | None = None) -> dict[str, dict]:
    """One greedy answer per question (cached per question): {id: {"text", "stopped"}}. ``style``:
    :func:`~hneuron_utils.text.generation.question_prompt` (chat = the paper's prompt; base = "\nAnswer:")."""
    by_id = {r.id: r for r in records}
    s = Sampling(max_new_tokens=max_new_tokens)
    key = {"stage": "greedy", "model": model_key(loaded), "suffix": suffix, "max_new_tokens": max_new_tokens,
           **_style_key(style, system)}

    def compute(ids: list[str]) -> dict[str, dict]:
        prompts = [question_prompt(loaded.tokenizer, by_id[i].question, style, suffix, system) for i in ids]
        outs = sample_many(loaded, prompts, 1, s, keys=ids, batch_size=batch_size, progress=False,
                           **_generate_kw(style))
        return {i: {"text": o[0].text, "stopped": o[0].stopped} for i, o in zip(ids, outs)}

    return cached_map("greedy", key, [r.id for r in records], compute, chunk=max(batch_size, 64))


def sampled_answers(loaded: Any, records: Sequence[QARecord], sampling: Sampling, n_samples: int, seed: int,
                    *, batch_size: int, suffix: str = PAPER_SUFFIX, upto: int | None = None,
                    style: str = "chat", system: str | None = None) -> dict[str, list[dict]]:
    """The first ``upto`` (default all K) of each question's K seeded samples, cached per question.

    The cache holds, per question, the samples drawn so far (a prefix of its K); asking for more
    draws only the missing ones, which are the same as if all had been drawn at once.
    """
    from hneuron_utils.cache import JsonlStore, stage_dir

    upto = n_samples if upto is None else upto
    if not 0 < upto <= n_samples:
        raise ValueError(f"upto must be in 1..{n_samples}, got {upto}")
    by_id = {r.id: r for r in records}
    key = {"stage": "samples", "model": model_key(loaded), "suffix": suffix, "sampling": vars(sampling),
           "n_samples": n_samples, "seed": seed, **_style_key(style, system)}
    store = JsonlStore(stage_dir("samples", key) / "items.jsonl")
    have = {i: (store[i] if i in store else []) for i in by_id}
    groups: dict[int, list[str]] = {}
    for i, got in have.items():
        if len(got) < upto:
            groups.setdefault(len(got), []).append(i)
    for start, ids in sorted(groups.items()):
        per_chunk = max(1, batch_size // (upto - start)) * 4
        for j in range(0, len(ids), per_chunk):
            chunk = ids[j:j + per_chunk]
            prompts = [question_prompt(loaded.tokenizer, by_id[i].question, style, suffix, system) for i in chunk]
            outs = sample_many(loaded, prompts, upto - start, sampling, seed=seed, keys=chunk, batch_size=batch_size,
                               progress=False, first_sample=start, **_generate_kw(style))
            new = {i: have[i] + [{"text": x.text, "stopped": x.stopped} for x in o] for i, o in zip(chunk, outs)}
            store.add(new)
            have.update(new)
    return {i: have[i][:upto] for i in by_id}


def disqualifies(judge: Judge, verdict: Verdict, text: str) -> bool:
    """Whether a sample rules its question out of both classes: an empty answer, or a refusal — unless
    the judge counts abstaining as the faithful answer (``judges.abstention_is_faithful``, e.g. NonExist)."""
    return not text or (verdict.refusal and not getattr(judge, "abstention_is_faithful", False))


def can_still_pass(rule: Rule, n_drawn: int, n_correct: int, n_bad: int) -> bool:
    """Whether more samples could still make the question faithful or hallucinated."""
    if n_bad:
        return False
    left = rule.n_samples - n_drawn
    return n_correct + left >= rule.faithful_min or n_correct <= rule.hallucinated_max


def most_frequent(texts: Sequence[str]) -> int:
    """Index of the most frequent response (exact text; ties → the earliest)."""
    counts = Counter(texts)
    best = max(counts.values())
    return next(i for i, t in enumerate(texts) if counts[t] == best)


def walk_order(records: Sequence[QARecord], seed: int) -> list[QARecord]:
    """The seeded order in which :func:`label_pool` looks at a pool's questions."""
    order = list(records)
    random.Random(seed).shuffle(order)
    return order


def label_pool(loaded: Any, records: Sequence[QARecord], judge: Judge, rule: Rule, sampling: Sampling,
               *, target_per_class: int, seed: int, batch_size: int, screen: bool = True, check_size: int = 0,
               chunk_size: int = 250, hallucinated_pass_rate: float = 0.8, screen_max_new_tokens: int | None = None,
               first_round: int = 0, progress: bool = True, style: str = "chat",
               system: str | None = None) -> pd.DataFrame:
    """Walk the pool in a seeded random order, ``chunk_size`` questions at a time, until both classes
    have ``target_per_class`` questions (or the pool ends). One row per question looked at.

    With ``screen``, each question first gets one greedy answer; K samples are drawn only for questions
    that can still pass the rule: greedy-correct ones (faithful candidates) and, while hallucinated
    questions are still needed, greedy-wrong ones (about ``(needed) / hallucinated_pass_rate`` of them
    per chunk). The first ``check_size`` questions of the order are sampled whatever their greedy
    answer, to measure what the screen misses. Without ``screen`` every question looked at is sampled.
    ``style`` and ``system`` set the prompt (:func:`~hneuron_utils.text.generation.question_prompt`).
    """
    from hneuron_utils.progress import bar as progress_bar

    order = walk_order(records, seed)
    check = {r.id for r in order[:check_size]}
    rows: list[dict] = []
    found = Counter()
    chunks = [order[i:i + chunk_size] for i in range(0, len(order), chunk_size)]
    bar = progress_bar(chunks, show=progress, desc="pool chunks", mininterval=5.0)
    for chunk in bar:
        greedy = greedy_answers(loaded, chunk, screen_max_new_tokens or sampling.max_new_tokens, batch_size,
                                style=style, system=system) \
            if screen else {}
        need_h = max(0, target_per_class - found["hallucinated"])
        quota_h = math.ceil(need_h / hallucinated_pass_rate)
        todo, info = [], {}
        for r in chunk:
            row: dict[str, Any] = {"id": r.id, "question": r.question, "answers": list(r.answers),
                                   "in_check": r.id in check}
            if screen:
                g = greedy[r.id]
                v = judge.judge(r.question, g["text"], r.answers)
                row.update(greedy=g["text"], greedy_correct=v.correct, greedy_refusal=v.refusal)
                if r.id in check:
                    take = True
                elif disqualifies(judge, v, g["text"]):
                    take = False
                elif v.correct:
                    take = True
                else:
                    take = quota_h > 0
                    quota_h -= take
            else:
                take = True
            row["sampled"] = take
            info[r.id] = row
            if take:
                todo.append(r)
        samples: dict[str, list[dict]] = {}
        if todo and 0 < first_round < rule.n_samples:
            early = [r for r in todo if r.id not in check]
            samples.update(sampled_answers(loaded, early, sampling, rule.n_samples, seed, batch_size=batch_size, upto=first_round,
                                           style=style, system=system))
            more = []
            for r in early:
                vs = [judge.judge(r.question, x["text"], r.answers) for x in samples[r.id]]
                bad = sum(disqualifies(judge, v, x["text"]) for v, x in zip(vs, samples[r.id]))
                if can_still_pass(rule, len(vs), sum(v.correct for v in vs), bad):
                    more.append(r)
            rest = more + [r for r in todo if r.id in check]
            samples.update(sampled_answers(loaded, rest, sampling, rule.n_samples, seed, batch_size=batch_size, style=style,
                                           system=system))
        elif todo:
            samples = sampled_answers(loaded, todo, sampling, rule.n_samples, seed, batch_size=batch_size, style=style,
                                      system=system)
        for r in chunk:
            row = info[r.id]
            if row["sampled"]:
                row.update(judge_samples(judge, rule, r, samples[r.id]))
                found[row["label"]] += 1
            else:
                row.update(label="not sampled")
            rows.append(row)
        bar.set_postfix(faithful=found["faithful"], hallucinated=found["hallucinated"], refresh=False)
        if found["faithful"] >= target_per_class and found["hallucinated"] >= target_per_class \
                and len(rows) >= check_size:
            break
    bar.close()
    return pd.DataFrame(rows)


def judge_samples(judge: Judge, rule: Rule, record: QARecord, samples: Sequence[dict]) -> dict[str, Any]:
    """One question's drawn samples judged and labelled by the consistency rule: the texts, how many are
    correct, refused or empty, and the label ('stopped early' when fewer than K were drawn and none
    disqualifies the question)."""
    texts = [x["text"] for x in samples]
    verdicts = [judge.judge(record.question, t, record.answers) for t in texts]
    n_correct = sum(v.correct for v in verdicts)
    n_empty = sum(not t for t in texts)
    n_bad = sum(disqualifies(judge, v, t) for v, t in zip(verdicts, texts)) - n_empty
    label = rule.label(n_correct, n_bad, n_empty) if len(texts) == rule.n_samples \
        else ("dropped" if n_bad or n_empty else "stopped early")
    return {"samples": texts, "stopped": [x["stopped"] for x in samples], "n_drawn": len(texts),
            "n_correct": n_correct, "n_refused": sum(v.refusal for v in verdicts), "n_empty": n_empty, "label": label}


def example_row(row: Any, lab: str, split_name: str, judge: Judge, *, span_rule: str) -> dict[str, Any]:
    """One example from a labelled question: the most frequent eligible response for train, the first
    eligible sample for test. Under the paper's rule every sample agrees with the label; under a relaxed
    rule only samples whose verdict agrees are eligible. The answer span follows ``span_rule`` (one of
    ``text.answer_span.SPAN_RULES``; None = the whole response); ``alias_span`` keeps the judge's matched
    alias, whatever the rule."""
    from hneuron_utils.text.answer_span import answer_span

    ok = [j for j, t in enumerate(row.samples)
          if judge.judge(row.question, t, row.answers).correct == (lab == "faithful")]
    i = ok[most_frequent([row.samples[j] for j in ok])] if split_name == "train" else ok[0]
    resp = row.samples[i]
    v = judge.judge(row.question, resp, row.answers)
    span = answer_span(span_rule, row.question, resp, v.span, v.correct)
    return {"id": row.id, "question": row.question, "answers": row.answers,
            "label": HALLUCINATED if lab == "hallucinated" else FAITHFUL, "class": lab,
            "split": split_name, "response": resp, "sample_index": i,
            "span": list(span) if span else None, "span_rule": span_rule,
            "alias_span": list(v.span) if v.span else None, "alias": v.alias,
            "n_correct": row.n_correct, "stopped": row.stopped[i]}


def one_class(df: pd.DataFrame, judge: Judge, lab: str, n: int, seed: int, *, span_rule: str) -> pd.DataFrame:
    """Up to ``n`` test examples of one class (sample 0 of each question), for sets where the other
    class is empty and no balanced test set exists."""
    pool = df[df.label == lab].sample(frac=1.0, random_state=seed).iloc[:n]
    return pd.DataFrame([example_row(row, lab, "test", judge, span_rule=span_rule) for _, row in pool.iterrows()])


def split(df: pd.DataFrame, judge: Judge, n_train: int, n_test: int, seed: int, *, span_rule: str
          ) -> tuple[pd.DataFrame, dict]:
    """Balanced train/test examples, split by question. If a class has fewer than n_train + n_test
    questions, both splits shrink in the same proportion (balanced, largest achievable).

    Train examples use the most frequent of the K responses; test examples one sampled response
    (sample 0), as the paper does. (Under a relaxed rule, only samples whose verdict matches the label
    are eligible.) The answer span follows ``span_rule`` (see :func:`example_row`).
    """
    pools = {lab: df[df.label == lab].sample(frac=1.0, random_state=seed)
             for lab in ("faithful", "hallucinated")}
    avail = min(len(p) for p in pools.values())
    want = n_train + n_test
    if avail >= want:
        k_tr, k_te = n_train, n_test
    else:
        k_tr = round(avail * n_train / want)
        k_te = avail - k_tr
    out = [example_row(row, lab, split_name, judge, span_rule=span_rule)
           for lab, p in pools.items()
           for split_name, part in (("train", p.iloc[:k_tr]), ("test", p.iloc[k_tr:k_tr + k_te]))
           for _, row in part.iterrows()]
    sizes = {"available per class": avail, "train per class": k_tr, "test per class": k_te}
    return pd.DataFrame(out), sizes


def test_set(loaded: Any, records: Sequence[QARecord], judge: Judge, rule: Rule, sampling: Sampling,
             *, n_per_class: int, seed: int, batch_size: int, screen: bool = True,
             screen_max_new_tokens: int | None = None, first_round: int = 0,
             progress: bool = True, style: str = "chat", system: str | None = None, span_rule: str
             ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """A balanced test set built by the TriviaQA rules (notebooks 04 and 06): :func:`label_pool` until
    both classes hold ``n_per_class`` questions (no unscreened check subset), then :func:`split` with no
    training part, so each question contributes one sampled response. Returns (looked, examples, sizes)."""
    looked = label_pool(loaded, records, judge, rule, sampling, target_per_class=n_per_class, seed=seed,
                        batch_size=batch_size, screen=screen, check_size=0,
                        screen_max_new_tokens=screen_max_new_tokens, first_round=first_round, progress=progress,
                        style=style, system=system)
    examples, sizes = split(looked, judge, 0, n_per_class, seed, span_rule=span_rule)
    return looked, examples, sizes


def funnel(df: pd.DataFrame, examples: pd.DataFrame, pool_size: int, leak: dict[str, int]) -> pd.DataFrame:
    """Pool → looked at → screened → sampled → consistent per class → kept, as a table."""
    rows = [("TriviaQA questions in the pool", leak["questions"]),
            ("after the leak policy", pool_size),
            ("looked at (until both classes were full or the pool ended)", len(df))]
    if "greedy_correct" in df:
        rows += [("greedy answer correct", int(df.greedy_correct.sum())),
                 ("greedy answer refused or empty", int((df.greedy_refusal | (df.greedy == "")).sum()))]
    rows += [("sampled K times", int(df.sampled.sum()))]
    for lab in ("faithful", "hallucinated", "mixed", "stopped early", "dropped"):
        rows.append((f"  → {lab}", int((df.label == lab).sum())))
    for split_name in ("train", "test"):
        for lab in ("faithful", "hallucinated"):
            rows.append((f"kept: {split_name} {lab}",
                         int(((examples.split == split_name) & (examples["class"] == lab)).sum())))
    return pd.DataFrame(rows, columns=["stage", "questions"])


def histogram(df: pd.DataFrame, n_samples: int, subset: str) -> pd.DataFrame:
    """Number of questions by correct samples out of K, for 'unscreened' (the check subset) or 'sampled'."""
    d = df[df.sampled & (df.in_check if subset == "unscreened" else True)]
    if "n_drawn" in d:
        d = d[d.n_drawn == n_samples]  # questions stopped early have partial counts
    counts = d.n_correct.astype(int).value_counts().reindex(range(n_samples + 1), fill_value=0)
    return pd.DataFrame({"correct_of_K": counts.index, "questions": counts.values, "subset": subset})


def screen_misses(df: pd.DataFrame) -> dict[str, Any]:
    """On the unscreened check subset: consistent questions the greedy screen would not have sampled."""
    d = df[df.in_check & df.sampled]
    if "greedy_correct" not in d or d.empty:
        return {"checked": int(len(d))}
    bad_greedy = d.greedy_refusal | (d.greedy == "")
    miss_f = d[(d.label == "faithful") & (~d.greedy_correct | bad_greedy)]
    miss_h = d[(d.label == "hallucinated") & (d.greedy_correct | bad_greedy)]
    kept = d[d.label.isin(["faithful", "hallucinated"])]
    return {"checked": int(len(d)), "faithful": int((d.label == "faithful").sum()),
            "hallucinated": int((d.label == "hallucinated").sum()),
            "faithful missed by the screen": int(len(miss_f)),
            "hallucinated missed by the screen": int(len(miss_h)),
            "share of kept questions missed": (len(miss_f) + len(miss_h)) / max(1, len(kept))}


def teacher_forced_examples(tokenizer: Any, examples: pd.DataFrame, suffix: str = PAPER_SUFFIX,
                            style: str = "chat", system: str | None = None) -> tuple[list, list[tuple[str, str]]]:
    """The teacher-forced sequence (chat-templated question + response + end of turn, or for the base
    style the plain "question\nAnswer: response"; answer-token mask from the example's span) of every
    example row, and the (id, reason) of examples lost because their span covers no token — those get
    None in the list."""
    from hneuron_utils.text.tokens import SpanError, teacher_forced

    out, lost = [], []
    for ex in examples.itertuples():
        try:
            out.append(teacher_forced(tokenizer, question_prompt(tokenizer, ex.question, style, suffix, system), ex.response,
                                      tuple(ex.span) if ex.span else None, templated=style == "chat"))
        except SpanError as e:
            out.append(None)
            lost.append((ex.id, str(e)))
    return out, lost


def span_is_whole_response(response: str, span: Sequence[int] | None) -> bool:
    """Whether the answer tokens are the whole response (minus edge whitespace and trailing punctuation)."""
    from hneuron_utils.text.tokens import whole_response_span

    return span is None or tuple(span) == whole_response_span(response)


def greedy_correct_outside(loaded: Any, looked: pd.DataFrame, exclude: set[str], needed: int, judge: Judge,
                           *, batch_size: int, max_new_tokens: int, seed: int,
                           chunk_size: int = 250) -> tuple[list[str], dict[str, int]]:
    """TriviaQA questions the model answers correctly by greedy decoding, none of them in ``exclude``
    (the dataset): first those notebook 01 already screened (in a seeded order), then, only if fewer
    than ``needed``, questions 01 never looked at, screened greedily ``chunk_size`` at a time (cached)
    until ``needed`` are found or the pool ends. Returns (ids, counts of where they came from)."""
    from hneuron_utils.data import load_dataset

    col = looked.get("greedy_correct", pd.Series(False, index=looked.index)).fillna(False).astype(bool)
    known = looked[col & ~looked.id.isin(exclude)].id.tolist()
    known = [known[i] for i in np.random.default_rng(seed).permutation(len(known))]
    counts = {"from 01's screen": len(known), "screened here": 0, "found here": 0}
    if len(known) >= needed:
        return known, counts
    seen = set(looked.id) | set(exclude)
    rest = [r for r in load_dataset("triviaqa") if r.id not in seen]
    random.Random(seed + 5).shuffle(rest)
    for j in range(0, len(rest), chunk_size):
        chunk = [QARecord(r.id, r.question, tuple(usable_aliases(r.question, r.answers)), r.source, r.meta)
                 for r in rest[j:j + chunk_size]]
        chunk = [r for r in chunk if r.answers]
        got = greedy_answers(loaded, chunk, max_new_tokens, batch_size, progress=False)
        new = [r.id for r in chunk if judge.judge(r.question, got[r.id]["text"], r.answers).correct
               and not judge.judge(r.question, got[r.id]["text"], r.answers).refusal]
        counts["screened here"] += len(chunk)
        counts["found here"] += len(new)
        known += new
        if len(known) >= needed:
            break
    return known, counts


def known_records(loaded: Any, looked: pd.DataFrame, exclude: set[str], needed: int, judge: Judge, *, batch_size: int,
                  max_new_tokens: int, seed: int, what: str, parameters: Sequence[str]) -> tuple[list[QARecord], dict[str, int]]:
    """The first ``needed`` TriviaQA records of :func:`greedy_correct_outside` (questions the model knows,
    none in the dataset), stopping with :class:`SampleSizeError` (naming ``what`` and the ``parameters``
    that set the size) when the pool has fewer. Returns (records, where they came from)."""
    from hneuron_utils.data import load_dataset
    from hneuron_utils.checks import require_items

    ids, counts = greedy_correct_outside(loaded, looked, exclude, needed, judge, batch_size=batch_size, max_new_tokens=max_new_tokens, seed=seed)
    by_id = {r.id: r for r in load_dataset("triviaqa")}
    recs = [by_id[i] for i in ids[:needed]]
    require_items(what, len(recs), needed, tuple(parameters))
    return recs, counts


def leaked_example(records: Sequence[QARecord]) -> str | None:
    """A line showing the first question whose text contains one of its own answer aliases, or None."""
    for r in records:
        leaked = [a for a in r.answers if normalize(a) and normalize(a) in normalize(r.question)]
        if leaked:
            return f"a leaked alias: {r.question} → gold answers include {leaked}"
    return None


def add_token_counts(tokenizer: Any, examples: pd.DataFrame) -> tuple[pd.DataFrame, list, float]:
    """Answer-token and total-token counts of every example (as notebook 02 will tokenise it); examples
    whose answer span matches no token are dropped. Returns (examples, lost, share of examples whose
    answer span is the whole response)."""
    tf, lost = teacher_forced_examples(tokenizer, examples)
    examples = examples.assign(answer_tokens=[int(t.answer.sum()) if t is not None else 0 for t in tf],
                               tokens=[len(t.input_ids) if t is not None else 0 for t in tf])
    whole = [span_is_whole_response(r, sp) for r, sp in zip(examples.response, examples.span)]
    return examples[[t is not None for t in tf]].reset_index(drop=True), lost, sum(whole) / max(len(whole), 1)


def span_lengths(tokenizer: Any, examples: pd.DataFrame, *, rules: Sequence[str],
                 suffix: str = PAPER_SUFFIX) -> pd.DataFrame:
    """Answer tokens per example under each span rule, summarised per rule × split × class: examples, mean,
    median and maximum answer tokens, and the share of examples whose span is the whole response. The
    rows of ``examples`` need ``question``, ``response``, ``class``, ``split``, ``alias_span`` and ``label``."""
    from hneuron_utils.text.answer_span import answer_span, answer_token_indices

    rows = []
    for ex in examples.to_dict("records"):
        prompt = question_prompt(tokenizer, ex["question"], "chat", suffix)
        whole = answer_token_indices(tokenizer, prompt, ex["response"], None)
        for rule in rules:
            sp = answer_span(rule, ex["question"], ex["response"], ex["alias_span"], ex["label"] == FAITHFUL)
            got = answer_token_indices(tokenizer, prompt, ex["response"], sp)
            rows.append({"rule": rule, "split": ex["split"], "class": ex["class"],
                         "answer_tokens": len(got), "whole": got == whole})
    d = pd.DataFrame(rows)
    return (d.groupby(["rule", "split", "class"], sort=False)
            .agg(examples=("answer_tokens", "size"), mean_tokens=("answer_tokens", "mean"),
                 median_tokens=("answer_tokens", "median"), max_tokens=("answer_tokens", "max"),
                 share_whole_response=("whole", "mean"))
            .reset_index())


def reference_span_rows(tokenizer: Any, labels: pd.DataFrame, *, suffix: str = PAPER_SUFFIX) -> pd.DataFrame:
    """Reference-labelled answer spans (``data/labels/answer_spans.jsonl``) as rows for
    ``text.answer_span.span_agreement``: the rendered prompt each response answered (the paper's prompt),
    and ``correct`` from the class the response was drawn for (its verdict agrees with its class)."""
    need = {"question", "response", "span", "class", "alias_span"}
    if need - set(labels.columns):
        raise ValueError(f"the reference span labels lack the columns {sorted(need - set(labels.columns))}")
    return labels.assign(prompt=[question_prompt(tokenizer, q, "chat", suffix) for q in labels.question],
                         correct=labels["class"].eq("faithful"))


def read_span_labels(path: str | None = None) -> pd.DataFrame:
    """The reference answer spans (default ``data/labels/answer_spans.jsonl`` of the repository), one row per
    labelled response; a clear error if the file is missing."""
    from hneuron_utils.paths import project_root

    p = project_root() / "data" / "labels" / "answer_spans.jsonl" if path is None else project_root() / path
    if not p.exists():
        raise FileNotFoundError(f"reference answer spans {p} not found (see data/labels/README.md)")
    return pd.read_json(p, lines=True, dtype=False)
