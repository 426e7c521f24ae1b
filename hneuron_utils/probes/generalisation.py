"""Generalisation of a probe: out-of-domain question pools, their judges, and the TriviaQA classifiers
applied to them unchanged.

Each pool is judged like TriviaQA (rule judge: normalised gold-alias substring match) except NonExist,
whose faithful answer is to abstain (:class:`~hneuron_utils.data.nonexist.AbstentionJudge`). The test sets
are built by :func:`hneuron_utils.data.labelling.test_set` with the notebook-01 rules; the classifiers are
the ones notebook 03 saved (:func:`hneuron_utils.probes.probe.load_classifiers`), never refit here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from hneuron_utils.data import DataError, load_dataset, QARecord, sample
from hneuron_utils.judges import Judge, RuleJudge

DATASETS: tuple[str, ...] = ("nq_open", "biomed", "nonexist", "nonexist_paper")
STANDIN = "standin"
STANDIN_LARGE = "standin_large"  # the short stand-in plus MedQA's clinical vignettes as open questions
STANDINS = (STANDIN, STANDIN_LARGE)


@dataclass
class Pool:
    """A question pool ready for :func:`labelling.test_set`: its records, judge and how it was made."""

    name: str
    label: str  # how tables and figures name it
    records: list[QARecord]
    judge: Judge
    info: dict[str, Any] = field(default_factory=dict)
    system: str | None = None  # the system turn its questions are asked under (None = the template's default)


def biomed_label(source: str) -> str:
    return "biomedical (stand-in)" if source in STANDINS else "BioASQ"


def nonexist_label(name: str, system: str | None) -> str:
    """How tables name a NonExist set: plain 'NonExist' under the paper's prompt when it is the only one."""
    if name == "nonexist_paper":
        return "NonExist (paper prompt)"
    return "NonExist (abstention allowed)" if system else "NonExist"


def load_pool(name: str, *, biomed_source: str = STANDIN, nonexist_size: int = 600, seed: int = 0,
              leak_policy: str = "drop_aliases", pool_size: int | None = None, exclude_ids: Sequence[str] = (),
              nonexist_system_prompt: str | None = None) -> Pool:
    """The pool of one generalisation set.

    ``nq_open``: the packaged NQ-Open test questions. ``biomed``: the packaged stand-in
    (``biomed_source="standin"``: short questions; ``"standin_large"``: those plus MedQA's clinical
    vignettes as open questions) or a user's BioASQ file (JSON or JSONL path). ``nonexist``:
    ``nonexist_size`` generated questions about made-up entities (seeded), asked under
    ``nonexist_system_prompt``; ``nonexist_paper``: the same questions under the paper's prompt. The leak policy of notebook
    01 applies to the sets with gold aliases; ``pool_size`` (if not None) keeps a seeded subset of them.
    ``triviaqa`` (notebook 06) is TriviaQA itself; ``exclude_ids`` are left out before the subset is drawn."""
    from hneuron_utils.data.labelling import apply_leak_policy

    if name == "triviaqa":
        recs, label, info = load_dataset("triviaqa"), "TriviaQA", {"source": "TriviaQA (train split)"}
    elif name == "nq_open":
        recs, label, info = load_dataset("nq_open"), "NQ-Open", {"source": "NQ-Open test (DPR)"}
    elif name == "biomed":
        if biomed_source == STANDIN:
            recs = load_dataset("biomed_standin")
            info = {"source": "stand-in: open-ended questions from MedQA/MedMCQA (data/biomed_standin.jsonl)"}
        elif biomed_source == STANDIN_LARGE:
            short, vignettes = load_dataset("biomed_standin"), load_dataset("biomed_vignettes")
            recs = short + vignettes
            info = {"source": "larger stand-in: short open-ended questions from MedQA/MedMCQA "
                              "(data/biomed_standin.jsonl) and MedQA clinical vignettes (data/biomed_vignettes.jsonl)",
                    "short questions": len(short), "vignette questions": len(vignettes)}
        else:
            from hneuron_utils.data.biomed import load_bioasq

            recs, info = load_bioasq(biomed_source), {"source": f"BioASQ file {biomed_source}"}
        label = biomed_label(biomed_source)
    elif name in ("nonexist", "nonexist_paper"):
        from hneuron_utils.data.nonexist import AbstentionJudge, generate

        rejected: Counter = Counter()
        recs = generate(nonexist_size, seed, stats=rejected)
        system = nonexist_system_prompt if name == "nonexist" else None
        return Pool(name, nonexist_label(name, nonexist_system_prompt), recs, AbstentionJudge(),
                    {"source": "generated (hneuron_utils.data.nonexist)", "generated": len(recs),
                     "names rejected (collision or duplicate)": sum(rejected.values()),
                     "system turn": system or "the chat template's default (the paper's prompt)"}, system)
    else:
        raise DataError(f"Unknown generalisation set {name!r}; known: {', '.join(DATASETS)}")
    if exclude_ids:
        drop = set(exclude_ids)
        recs = [r for r in recs if r.id not in drop]
        info["excluded by id"] = len(drop)
    if pool_size is not None and pool_size < len(recs):
        info["subset"] = f"{pool_size} of {len(recs)} questions (seeded)"
        recs = sample(recs, pool_size, seed)
    recs, leaks = apply_leak_policy(recs, leak_policy)
    return Pool(name, label, recs, RuleJudge(), {**info, **{f"leak: {k}": v for k, v in leaks.items()}})


def evaluate_sets(clfs: Mapping[str, Any], features: Mapping[str, tuple[np.ndarray, np.ndarray]],
                  n_bootstrap: int, seed: int) -> pd.DataFrame:
    """Apply saved classifiers to each set's answer features.

    ``clfs`` holds ``h_neurons`` and ``random_<d>`` (notebook 03's file); ``features`` maps a set's
    label to (answer features [N, L*F] or [N, L, F], labels). One row per set and classifier: the
    H-neuron row has percentile-bootstrap 95% intervals over examples; the random row is the mean over
    draws with the 2.5–97.5% range of the draws (as in notebook 03). Sets with no example of one class
    get NaN metrics."""
    from hneuron_utils.stats import bootstrap_ci, evaluate

    rand = sorted((k for k in clfs if k.startswith("random_")), key=lambda k: int(k.split("_")[1]))
    if "h_neurons" not in clfs or not rand:
        raise ValueError("need the 'h_neurons' classifier and at least one 'random_<d>' one (notebook 03's file)")
    rows = []
    for name, (ans, y) in features.items():
        y = np.asarray(y)
        n = {"faithful": int((y == 0).sum()), "hallucinated": int((y == 1).sum())}
        base = {"set": name, "n faithful": n["faithful"], "n hallucinated": n["hallucinated"]}
        h = {"classifier": "H-neurons", **base}
        r = {"classifier": f"random neurons ({len(rand)} draws)", **base}
        if min(n.values()) == 0:
            for m in ("accuracy", "auroc"):
                h.update({m: np.nan, f"{m}_lo": np.nan, f"{m}_hi": np.nan})
                r.update({m: np.nan, f"{m}_lo": np.nan, f"{m}_hi": np.nan})
        else:
            p = clfs["h_neurons"](ans)
            for m in ("accuracy", "auroc"):
                pt, lo, hi = bootstrap_ci(y, p, m, n_bootstrap, seed)
                h.update({m: pt, f"{m}_lo": lo, f"{m}_hi": hi})
            draws = pd.DataFrame([evaluate(y, clfs[k](ans)) for k in rand])
            for m in ("accuracy", "auroc"):
                r.update({m: draws[m].mean(), f"{m}_lo": draws[m].quantile(0.025), f"{m}_hi": draws[m].quantile(0.975)})
        rows += [r, h]
    return pd.DataFrame(rows)


PAPER_TABLE1 = pd.DataFrame(
    [("Mistral-7B-v0.3", 0.35, 61.7, 78.4, 56.1, 71.5, 59.4, 75.5, 80.9, 91.1),
     ("Mistral-Small-3.1-24B", 0.01, 61.1, 81.0, 56.8, 71.3, 52.8, 69.5, 57.4, 86.6),
     ("Gemma-3-4B", 0.10, 62.0, 76.9, 59.7, 70.7, 56.0, 71.0, 56.9, 71.9),
     ("Gemma-3-27B", 0.18, 65.2, 83.6, 58.5, 68.6, 61.8, 72.0, 58.2, 95.9),
     ("Llama-3.1-8B", 0.02, 56.1, 70.1, 53.0, 63.3, 52.9, 66.0, 50.6, 43.1),
     ("Llama-3.3-70B", 0.01, 68.4, 82.7, 58.9, 67.2, 66.9, 74.3, 69.6, 96.7)],
    columns=["model", "‰", "TriviaQA random", "TriviaQA H", "NQ-Open random", "NQ-Open H", "BioASQ random",
             "BioASQ H", "NonExist random", "NonExist H"])
"""The paper's Table 1: accuracy (%) of the random-neuron / H-neuron classifiers (1,000 + 1,000 TriviaQA test)."""


def table1(results: pd.DataFrame, model: str, permille: float, order: Sequence[str]) -> pd.DataFrame:
    """The Table-1 analogue: rows random neurons / H-neurons, columns = accuracy and AUROC (with 95%
    intervals) per set in ``order``, plus the ‰ column."""
    rows = []
    for clf_kind, prefix in (("random neurons", "random"), ("H-neurons", "H-neurons")):
        row: dict[str, Any] = {"model": model, "classifier": clf_kind, "‰": round(permille, 3)}
        for s in order:
            d = results[(results["set"] == s) & results.classifier.str.startswith(prefix)]
            if d.empty:
                continue
            d = d.iloc[0]
            for m, name in (("accuracy", "acc"), ("auroc", "AUROC")):
                row[f"{s} {name}"] = d[m]
                row[f"{s} {name} 95% CI"] = (f"{d[m + '_lo']:.3f}–{d[m + '_hi']:.3f}"
                                             if np.isfinite(d[m + "_lo"]) else "—")
            row[f"{s} n per class"] = min(int(d["n faithful"]), int(d["n hallucinated"]))
        rows.append(row)
    return pd.DataFrame(rows)


def set_summary(looked: pd.DataFrame, sizes: Mapping[str, int], n_per_class: int, pool_size: int,
                n_samples: int | None = None) -> dict[str, Any]:
    """One column of the size table: the funnel of one set, and why it is smaller than asked if it is.
    With ``n_samples`` (K), also the questions whose K samples were all correct (the paper's 10-of-10
    rule), counted on the same samples whatever rule built the set. A set smaller than asked states its
    measured ceiling: how many questions were looked at, how many were greedy-correct and how many passed.
    With the greedy screen only greedy-correct questions are sampled as faithful candidates, so both the
    ceiling and the K-of-K count hold under the screen (notebook 01 measures what the screen misses)."""
    counts = looked.label.value_counts() if len(looked) else pd.Series(dtype=int)
    out: dict[str, Any] = {"pool": pool_size, "looked at": len(looked)}
    if "greedy_correct" in looked:
        out["greedy answer judged faithful"] = int(looked.greedy_correct.fillna(False).astype(bool).sum())
    out["sampled"] = int(looked.sampled.sum()) if len(looked) else 0
    for lab in ("faithful", "hallucinated", "mixed", "stopped early", "dropped"):
        out[lab] = int(counts.get(lab, 0))
    if n_samples is not None:
        full = looked[looked.get("n_drawn", pd.Series(0, index=looked.index)).fillna(0) == n_samples] \
            if len(looked) else looked
        out[f"all {n_samples} of {n_samples} correct"] = int((full.n_correct == n_samples).sum()) if len(full) else 0
    out["test per class"] = int(sizes["test per class"])
    short = [lab for lab in ("faithful", "hallucinated") if out[lab] < n_per_class]
    if not short:
        out["why smaller"] = ""
    else:
        whole = "the whole pool" if len(looked) >= pool_size else f"{len(looked)} questions looked at"
        greedy = (f", {out['greedy answer judged faithful']} with a faithful greedy answer"
                  if "greedy answer judged faithful" in out else "")
        out["why smaller"] = (f"measured ceiling: {whole} ({len(looked)} questions{greedy}) yields only "
                              f"{', '.join(f'{out[s]} {s}' for s in short)} question(s) under the labelling rule "
                              "(faithful candidates are the questions with a faithful greedy answer: the greedy screen)")
    return out


def flag_rates(clfs: Mapping[str, Any], features: Mapping[tuple[str, str], np.ndarray], n_bootstrap: int,
               seed: int) -> pd.DataFrame:
    """Per (set, class): the share of responses each classifier calls hallucinated (P > 0.5). For
    hallucinated responses higher is better, for faithful ones lower. Not the paper's metric: it
    needs no balanced set, so it can be reported where one class is empty (and it depends on the
    classifiers' threshold, fitted on TriviaQA). H-neurons: bootstrap 95% interval over responses;
    random: mean over the draws and the 2.5–97.5% range of the draws."""
    rand = [k for k in clfs if k.startswith("random_")]
    rows = []
    for (name, cls), ans in features.items():
        row: dict[str, Any] = {"set": name, "class": cls, "n": int(len(ans))}
        if len(ans) == 0:
            rows.append({**row, "H flagged": np.nan, "H lo": np.nan, "H hi": np.nan, "random flagged": np.nan,
                         "random lo": np.nan, "random hi": np.nan})
            continue
        h = (clfs["h_neurons"](ans) > 0.5).astype(float)
        boots = h[np.random.default_rng(seed).integers(0, len(h), size=(n_bootstrap, len(h)))].mean(1)
        r = np.array([(clfs[k](ans) > 0.5).mean() for k in rand])
        rows.append({**row, "H flagged": h.mean(), "H lo": float(np.quantile(boots, 0.025)),
                     "H hi": float(np.quantile(boots, 0.975)), "random flagged": r.mean(),
                     "random lo": float(np.quantile(r, 0.025)), "random hi": float(np.quantile(r, 0.975))})
    return pd.DataFrame(rows)


def answer_features(loaded: Any, examples: pd.DataFrame, batch_size: int, progress: bool = True,
                    style: str = "chat", *, with_signals: bool = False, system: str | None = None):
    """Teacher-forced answer-token CETT of test examples (cached like notebook 02): (the examples that
    have an answer token, their features float32 [N, L*F], the (id, reason) of examples lost, seconds).
    ``style``: the prompt style the responses were generated with (notebook 06 uses 'base'); ``system``:
    the system turn they were asked under (notebook 04's abstention-permitting NonExist prompt).
    With ``with_signals`` a fifth item holds the baselines' signals of the same pass: ``resid``
    [N, L, d], ``confidence`` [N, 3] and ``answer_tokens`` [N]."""
    import time

    from hneuron_utils.features.cett import extract_cached, load_signals
    from hneuron_utils.data.labelling import teacher_forced_examples
    from hneuron_utils.probes.probe import flatten

    n_features = loaded.n_layers * loaded.d_ff
    empty_sig = {"resid": np.zeros((0, loaded.n_layers, loaded.d_model), np.float32),
                 "confidence": np.zeros((0, 3), np.float32), "answer_tokens": np.zeros(0, int)}
    if examples.empty:
        out = (examples, np.zeros((0, n_features), np.float32), [], 0.0)
        return out + (empty_sig,) if with_signals else out
    tf, lost = teacher_forced_examples(loaded.tokenizer, examples, style=style, system=system)
    keep = [t is not None for t in tf]
    kept = examples[keep].reset_index(drop=True)
    if kept.empty:
        out = (kept, np.zeros((0, n_features), np.float32), lost, 0.0)
        return out + (empty_sig,) if with_signals else out
    t0 = time.perf_counter()
    tf = [t for t in tf if t is not None]
    ans, _, info = extract_cached(loaded, tf, kept.id.tolist(), batch_size=batch_size, progress=progress)
    out = (kept, flatten(ans.float().numpy()), lost, time.perf_counter() - t0)
    if not with_signals:
        return out
    _, resid, conf = load_signals(info["cache"])
    return out + ({"resid": resid.float().numpy(), "confidence": conf.numpy(),
                   "answer_tokens": np.array([int(t.answer.sum()) for t in tf])},)


def table1_row(model: str, permille: float, random_accuracy: float, h_row: pd.Series, n_train: int, *, n_test: int,
               C: float, rule: str) -> pd.DataFrame:
    """This run's TriviaQA row of the paper's Table 1 (accuracy in %), followed by the paper's rows."""
    ours = {"model": f"{model} (this run)", "‰": round(permille, 3), "TriviaQA random": round(100 * random_accuracy, 1),
            "TriviaQA H": round(100 * h_row.accuracy, 1),
            "H 95% CI": f"{100 * h_row.accuracy_lo:.1f}–{100 * h_row.accuracy_hi:.1f}",
            "test per class": n_test, "train per class": n_train, "C": C, "rule": rule}
    paper = PAPER_TABLE1[["model", "‰", "TriviaQA random", "TriviaQA H"]].assign(
        model=PAPER_TABLE1.model + " (paper)", **{"test per class": 1000, "train per class": 1000})
    return pd.concat([pd.DataFrame([ours]), paper], ignore_index=True)


# --------------------------------------------------------------------------- notebook 04's steps


def check_rescore(rescored: pd.DataFrame, test_03: pd.DataFrame) -> str:
    """Notebook 04's TriviaQA scores from the saved classifiers must equal notebook 03's test table."""
    h03 = test_03[test_03.classifier.str.startswith("H-neurons")].iloc[0]
    r03 = test_03[test_03.classifier.str.startswith("random")].iloc[0]
    for m in ("accuracy", "auroc"):
        if not (np.isclose(rescored.iloc[1][m], h03[m]) and np.isclose(rescored.iloc[0][m], r03[m])):
            raise ValueError("03_classifiers.npz does not reproduce 03_test.csv: re-run notebook 03")
    return "TriviaQA test, scored from 03_classifiers.npz: identical to notebook 03's table."


def one_per_category(pool: Pool) -> pd.DataFrame:
    """The first question of each category of a generated (NonExist) pool."""
    seen: dict[str, str] = {}
    for r in pool.records:
        seen.setdefault(r.meta["category"], r.question)
    return pd.DataFrame({"category": list(seen), "question": list(seen.values())})


def build_test_sets(loaded: Any, pools: Mapping[str, Pool], rule: Any, sampling: Any, cfg: Any,
                    *, timings: dict[str, float]) -> dict[str, tuple[pd.DataFrame, pd.DataFrame, dict]]:
    """One balanced test set per pool (:func:`labelling.test_set`, as notebook 01 labels TriviaQA), with
    the seconds each took added to ``timings``. Returns {name: (looked, examples, sizes)}."""
    import time

    from hneuron_utils.data.labelling import test_set

    built = {}
    for name, pool in pools.items():
        t0 = time.perf_counter()
        built[name] = test_set(loaded, pool.records, pool.judge, rule, sampling, n_per_class=cfg.gen_n_per_class, seed=cfg.seed,
                               batch_size=cfg.gen_batch_size, screen=cfg.screen, screen_max_new_tokens=cfg.screen_max_new_tokens,
                               first_round=cfg.sample_first_round, system=pool.system, span_rule=cfg.answer_span)
        timings[f"{pool.label}: sample and judge"] = time.perf_counter() - t0
    return built


def ours_vs_paper(t1: pd.DataFrame, model: str, permille: float, order: Sequence[str], biomed_standin: bool) -> pd.DataFrame:
    """This run's Table-1 accuracies (%) in the paper's layout, followed by the paper's rows."""
    ours = {"model": f"{model} (this run)", "‰": round(permille, 3)}
    for s in order:
        for k, row in (("random", t1.iloc[0]), ("H", t1.iloc[1])):
            if f"{s} acc" in row:
                ours[f"{s} {k}"] = round(100 * row[f"{s} acc"], 1)
    paper = PAPER_TABLE1.assign(model=PAPER_TABLE1.model + " (paper)")
    if any(s.startswith("NonExist (") for s in order):  # the paper's NonExist is asked with its plain prompt
        paper = paper.rename(columns={"NonExist random": "NonExist (paper prompt) random",
                                      "NonExist H": "NonExist (paper prompt) H"})
    if biomed_standin:  # the paper's BioASQ columns under the stand-in's name: the sets differ
        paper = paper.rename(columns={"BioASQ random": f"{biomed_label(STANDIN)} random", "BioASQ H": f"{biomed_label(STANDIN)} H"})
    return pd.concat([pd.DataFrame([ours]), paper], ignore_index=True)


def one_class_features(loaded: Any, built: Mapping[str, tuple], pools: Mapping[str, Pool], n: int, seed: int,
                       *, batch_size: int, timings: dict[str, float], span_rule: str) -> dict[tuple[str, str], np.ndarray]:
    """Answer features of up to ``n`` responses per (set, class), whether or not the other class exists
    (answer spans by ``span_rule``)."""
    from hneuron_utils.data.labelling import one_class

    feats = {}
    for name, (looked, _, _) in built.items():
        label = pools[name].label
        for cls in ("hallucinated", "faithful"):
            ex1 = one_class(looked, pools[name].judge, cls, n, seed, span_rule=span_rule) if len(looked) else pd.DataFrame()
            _, feats[(label, cls)], _, secs = answer_features(loaded, ex1, batch_size, progress=False,
                                                              system=pools[name].system)
            timings[f"{label}: CETT ({cls}, one class)"] = secs
    return feats


def set_features(loaded: Any, built: dict[str, tuple], pools: Mapping[str, Pool], batch_size: int,
                 timings: dict[str, float]) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, dict]]:
    """Answer-token CETT and baseline signals of every test set (cached like notebook 02). Examples with
    no answer token are dropped from ``built`` in place (and reported). Returns (features: label →
    (features, labels), signals: label → signals)."""
    features, signals = {}, {}
    for name, (looked, ex, sizes) in built.items():
        label = pools[name].label
        ex, ans, lost, secs, signals[label] = answer_features(loaded, ex, batch_size, with_signals=True,
                                                              system=pools[name].system)
        if lost:
            print(f"{label}: {len(lost)} examples lost (no answer token): {lost[:3]}")
        built[name] = (looked, ex, sizes)
        features[label] = (ans, np.asarray(ex.get("label", []), dtype=int))  # a set can have no example at all
        timings[f"{label}: CETT"] = secs
    return features, signals


# --------------------------------------------------------------------------- the prompt's shift (04, §4)


def triviaqa_under_system(loaded: Any, test: pd.DataFrame, system: str, batch_size: int
                          ) -> tuple[pd.DataFrame, np.ndarray, dict]:
    """TriviaQA's test answers (notebook 01's responses and labels, unchanged) read under ``system``:
    the teacher-forced CETT of the same answer tokens with the system turn in the context. A
    counterfactual: the answers were generated without the turn (under it the model abstains on some,
    :func:`abstention_by_class`), so this measures what the turn alone does to the features of fixed
    answers, apart from any change of question set or of behaviour. Returns (kept examples, features
    [N, L*F], signals)."""
    kept, ans, lost, _, sig = answer_features(loaded, test, batch_size, with_signals=True, system=system)
    if lost:
        raise ValueError(f"{len(lost)} TriviaQA test answers lost their answer tokens under the system turn: {lost[:3]}")
    return kept, ans, sig


def abstention_by_class(loaded: Any, test: pd.DataFrame, system: str, max_new_tokens: int, batch_size: int,
                        *, n_bootstrap: int, seed: int) -> pd.DataFrame:
    """Greedy answers to TriviaQA's test questions under ``system``: per class of notebook 01 (faithful
    = it answered right under notebook 01's rule without the system turn), the share that abstain
    (:class:`~hneuron_utils.data.nonexist.AbstentionJudge`) and the share still answered correctly (the
    TriviaQA rule judge), with n and bootstrap 95% intervals. It says what the prompt does to questions
    whose answer the model knows."""
    from hneuron_utils.data.labelling import greedy_answers
    from hneuron_utils.data.nonexist import AbstentionJudge
    from hneuron_utils.stats import rate_with_ci

    recs = [QARecord(r.id, r.question, tuple(r.answers), "triviaqa") for r in test.itertuples()]
    greedy = greedy_answers(loaded, recs, max_new_tokens, batch_size, progress=False, system=system)
    absj, rule = AbstentionJudge(), RuleJudge()
    rows, flags = [], {}
    for cls in ("faithful", "hallucinated"):
        part = [r for r, c in zip(recs, test["class"]) if c == cls]
        texts = [greedy[r.id]["text"] for r in part]
        flags[cls] = np.array([absj.judge(r.question, t).correct for r, t in zip(part, texts)], float)
        ab = rate_with_ci(flags[cls], n_bootstrap, seed)
        ok = rate_with_ci([rule.judge(r.question, t, r.answers).correct for r, t in zip(part, texts)], n_bootstrap, seed)
        rows.append({"class (notebook 01)": cls, "n": ab.n, "abstains": ab.rate, "abstains lo": ab.lo,
                     "abstains hi": ab.hi, "answers correctly": ok.rate, "correct lo": ok.lo, "correct hi": ok.hi})
    f, h = flags["faithful"], flags["hallucinated"]
    if len(f) and len(h):  # independent groups: resample each
        rng = np.random.default_rng(seed)
        d = (h[rng.integers(0, len(h), (n_bootstrap, len(h)))].mean(1)
             - f[rng.integers(0, len(f), (n_bootstrap, len(f)))].mean(1))
        rows.append({"class (notebook 01)": "hallucinated − faithful", "n": len(f) + len(h),
                     "abstains": h.mean() - f.mean(), "abstains lo": float(np.quantile(d, 0.025)),
                     "abstains hi": float(np.quantile(d, 0.975))})
    return pd.DataFrame(rows)


def check_datasets(datasets: Sequence[str], nonexist_system_prompt: str | None) -> None:
    """Refuse a set list that would build the same set twice (``nonexist_paper`` is ``nonexist`` when no
    system turn is set)."""
    if "nonexist_paper" in datasets and "nonexist" in datasets and not nonexist_system_prompt:
        raise ValueError("gen_datasets has both 'nonexist' and 'nonexist_paper' but nonexist_system_prompt is null: "
                         "they would be the same set; drop 'nonexist_paper' or set a system prompt")


def labels_for(labels: pd.DataFrame, system: str | None) -> pd.DataFrame:
    """The reference labels that validate a run: those drawn under the paper's prompt, and those drawn under
    exactly the run's system turn (labels made under another turn say nothing about this one)."""
    if "system" not in labels:
        return labels
    none = labels.system.isna()
    return labels[none | (labels.system == system)] if system else labels[none]


def paired_auroc_shift(clf: Any, a: np.ndarray, b: np.ndarray, y: np.ndarray, n_bootstrap: int, *, seed: int
                       ) -> dict[str, float]:
    """AUROC of one classifier on the same examples read two ways (``a``, ``b``: features in the same
    order, labels ``y``), and the paired 95% interval of the difference b − a from
    :func:`~hneuron_utils.probes.baselines.compare` (one class-stratified bootstrap over the questions)."""
    from hneuron_utils.probes.baselines import compare

    metrics, diffs = compare(np.asarray(y), {"system turn": clf(b), "paper prompt": clf(a)}, "system turn",
                             n_bootstrap, seed)
    m, d = metrics.set_index("method").auroc, diffs.iloc[0]
    return {"auroc (paper prompt)": m["paper prompt"], "auroc (system turn)": m["system turn"],
            "difference": d.auroc_diff, "difference lo": d.auroc_diff_lo, "difference hi": d.auroc_diff_hi,
            "n": int(len(y))}


def agreement_by_prompt(judge: Judge, labels: pd.DataFrame) -> pd.DataFrame:
    """The judge against reference labels, per prompt the responses were drawn under (column ``prompt``;
    missing = the paper's) and over all of them: responses, counts per class, agreement, Cohen's κ (NaN
    where one class is absent: then agreement says nothing a constant judge would not) and the
    majority-class baseline."""
    from hneuron_utils.judges.agreement import judge_agreement

    lab = labels.assign(prompt=labels.get("prompt", pd.Series("paper", index=labels.index)).fillna("paper"))
    parts = [(p, d) for p, d in lab.groupby("prompt", sort=True)] + ([("all", lab)] if lab.prompt.nunique() > 1 else [])
    return pd.DataFrame([{"prompt": p, **judge_agreement(judge, d)} for p, d in parts])
