"""Stated confidence and the H-neurons: does the model's *stated* confidence in its own answer track whether the
answer is right, and does scaling the H-neurons move it?

Design: a held-out TriviaQA question is answered by the unmodified model (greedy, the paper's prompt, notebook
01's screen). A second user turn then asks whether the answer is correct (Yes or No) and how confident the
model is, as a number from 0 to 100. Two readings of the same reply: the **stated number**, and **P(yes)**, the
probability the model gives "Yes" over "No" as its first token (read from the same forward pass; a
continuous self-assessment that cannot sit at a ceiling the way a stated "100" can). The H-neurons (or a random set of the same size) are scaled by α through notebook 05's
intervention during the whole forward pass of that confidence turn (the model re-reads the question and
its own, fixed, answer under α and then states a number): the answer's text is the same at every α, so any
change of the number is the confidence report moving, not the answer.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from hneuron_utils.text.generation import PAPER_SUFFIX

ASK = ("Is your answer correct? Reply Yes or No, then state your confidence that it is correct as a number "
       "from 0 to 100.")


def confidence_messages(question: str, answer: str) -> list[dict[str, str]]:
    """The question (the paper's prompt), the model's own answer, and the confidence question."""
    return [{"role": "user", "content": question.strip() + PAPER_SUFFIX}, {"role": "assistant", "content": answer},
            {"role": "user", "content": ASK}]


_SCALE = re.compile(r"(?i)\b0\s*(?:-|–|to)\s*100\b|\bout of (?:a )?(?:possible )?100\b|/\s*100\b")
_TEN = re.compile(r"(?i)^\s*(?:/|out of)\s*10\b(?!0)")


def parse_confidence(text: str) -> float | None:
    """The stated confidence: the first number with a % sign, else the first number in [0, 100] that is not
    part of a restated scale ("0 to 100", "out of 100", "/100"); a score out of 10 ("8/10", "8 out of 10") is
    not read (None), nor is a reply without such a number."""
    t = _SCALE.sub(" ", text)
    nums = [(m, float(m.group(1))) for m in re.finditer(r"(?<![\d.])(\d{1,3}(?:\.\d+)?)(?![\d])", t)]
    pct = [v for m, v in nums if t[m.end():m.end() + 2].lstrip().startswith("%")]
    if pct:
        return pct[0] if 0 <= pct[0] <= 100 else None
    for m, v in nums:
        if _TEN.match(t[m.end():]):
            return None
        if 0 <= v <= 100:
            return v
    return None


def replies(loaded: Any, ids: Sequence[str], conversations: Sequence[list[dict[str, str]]],
            flat_neurons: Sequence[int] | None, alpha: float, *, max_new_tokens: int, batch_size: int, seed: int = 0
            ) -> dict[str, dict]:
    """Greedy reply to each conversation with ``flat_neurons`` scaled by ``alpha`` through nnsight (None or α = 1:
    unmodified), and from the same pass P(yes) and ``yes_no_mass``
    (:func:`hneuron_utils.text.replies.yes_no_replies`; cached per item, keyed by the neurons and α too)."""
    from hneuron_utils.cache import digest
    from hneuron_utils.interventions import scaled_forward, unmodified
    from hneuron_utils.text.replies import yes_no_replies

    if unmodified(flat_neurons, alpha):
        return yes_no_replies(loaded, ids, conversations, max_new_tokens=max_new_tokens, batch_size=batch_size,
                              seed=seed)
    return yes_no_replies(loaded, ids, conversations, max_new_tokens=max_new_tokens, batch_size=batch_size,
                          seed=seed, make_forward=lambda: scaled_forward(loaded, flat_neurons, alpha),
                          condition={"neurons": digest(sorted(int(f) for f in flat_neurons)), "alpha": float(alpha)})


def stated(loaded: Any, ids: Sequence[str], questions: Sequence[str], answers: Sequence[str],
           sets: Mapping[str, Sequence[int] | None], *, alphas: Sequence[float], max_new_tokens: int,
           batch_size: int, seed: int = 0) -> pd.DataFrame:
    """The confidence turn of every answer under every (neuron set, α): one row per (id, neurons, alpha) with the
    reply, the stated number (``confidence``), ``p_yes`` and ``yes_no_mass``. α = 1 is the unmodified model
    (computed once, shared by every set)."""
    convs = [confidence_messages(q, a) for q, a in zip(questions, answers)]
    rows = []
    for name, flat in sets.items():
        for a in alphas:
            got = replies(loaded, list(ids), convs, flat, float(a), max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed)
            rows += [{"id": i, "neurons": name, "alpha": float(a), "reply": got[i]["text"],
                      "confidence": parse_confidence(got[i]["text"]), "p_yes": got[i]["p_yes"],
                      "yes_no_mass": got[i]["yes_no_mass"]} for i in ids]
    return pd.DataFrame(rows)


def answer_examples(records: Sequence[Any], outcomes: pd.DataFrame, *, span_rule: str) -> pd.DataFrame:
    """Notebook 02-style examples of the answers (question, response, answer span by ``span_rule``;
    hallucinated = 1 when the rule judge says not correct), for the H-neuron classifier's CETT features."""
    from hneuron_utils.judges import RuleJudge
    from hneuron_utils.text.answer_span import answer_span

    j = RuleJudge()
    got = outcomes.set_index("id")
    rows = []
    for r in records:
        text = got.loc[r.id, "text"]
        v = j.judge(r.question, text, r.answers)
        span = answer_span(span_rule, r.question, text, v.span, v.correct)
        rows.append({"id": r.id, "question": r.question, "answers": list(r.answers), "response": text,
                     "span": list(span) if span else None, "span_rule": span_rule, "label": int(not v.correct)})
    return pd.DataFrame(rows)


def auroc_table(y_wrong: np.ndarray, scores: Mapping[str, np.ndarray], reference: str, n_boot: int, seed: int
                ) -> pd.DataFrame:
    """AUROC of each score for telling wrong answers (1) from right ones, with intervals and the paired
    difference from ``reference``. Scores must rise with the chance of a wrong answer."""
    from hneuron_utils.stats import paired_auroc

    t = paired_auroc(np.asarray(y_wrong, int), dict(scores), reference, n_boot, seed)
    return t.rename(columns={"model": "score", "n faithful": "n right", "n hallucinated": "n wrong",
                             "change": f"minus {reference}", "change lo": "lo of difference",
                             "change hi": "hi of difference"})


def alpha_table(conf: pd.DataFrame, y_wrong: Mapping[str, int], n_boot: int, seed: int,
                measure: str = "confidence") -> pd.DataFrame:
    """Per (neuron set, α): the mean of ``measure`` (the stated number, or ``p_yes``) with its interval, the
    paired change from α = 1 (items with a value at both), the replies without a value, and its AUROC."""
    from hneuron_utils.stats import _auroc
    from hneuron_utils.training.forgetting import paired_change

    conf = conf.rename(columns={measure: "value"})
    base = conf[conf.alpha == 1.0].drop_duplicates("id").set_index("id").value
    rows = []
    for (name, a), g in conf.groupby(["neurons", "alpha"], sort=False):
        g = g.set_index("id")
        ok = g.value.notna()
        v = g.value[ok].to_numpy(float)
        boots = v[np.random.default_rng(seed).integers(0, len(v), (n_boot, len(v)))].mean(1) if len(v) else np.array([np.nan])
        both = ok & base.reindex(g.index).notna()
        ch = (paired_change(base.reindex(g.index)[both].to_numpy(float), g.value[both].to_numpy(float), n_boot, seed)
              if both.sum() else {"change": np.nan, "change lo": np.nan, "change hi": np.nan})
        y = np.array([y_wrong[i] for i in g.index[ok]])
        rows.append({"measure": measure, "neurons": name, "alpha": a, "n": int(ok.sum()), "no number": int((~ok).sum()),
                     "mean confidence": v.mean() if len(v) else np.nan, "lo": np.quantile(boots, 0.025),
                     "hi": np.quantile(boots, 0.975), "change from α = 1": ch["change"], "change lo": ch["change lo"],
                     "change hi": ch["change hi"], "auroc (wrong vs right)": _auroc(y, -v) if len(v) else np.nan})
    return pd.DataFrame(rows)


def versus_random(conf: pd.DataFrame, n_boot: int, seed: int, h: str = "H-neurons", measure: str = "confidence"
                  ) -> pd.DataFrame:
    """At each α ≠ 1: the H-neurons' stated confidence minus the random set's, paired by answer (answers with
    a number under both), with a bootstrap interval. At α = 1 both are the unmodified model."""
    from hneuron_utils.training.forgetting import paired_change

    rows = []
    for a in sorted(set(conf.alpha) - {1.0}):
        g = conf[conf.alpha == a].pivot_table(index="id", columns="neurons", values=measure, aggfunc="first")
        for r in [c for c in g.columns if c != h]:
            both = g[[h, r]].dropna()
            if both.empty:
                continue
            ch = paired_change(both[r].to_numpy(float), both[h].to_numpy(float), n_boot, seed)
            rows.append({"measure": measure, "alpha": a, "versus": r, "n": len(both), "H minus random": ch["change"],
                         "lo": ch["change lo"], "hi": ch["change hi"]})
    return pd.DataFrame(rows)
