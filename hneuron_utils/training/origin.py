"""The origin of H-neurons across tuning: the base model's test sets (base prompting), the tuned model's
probe applied to the base model, and the before/after accuracy of the tuning.

The tuned model's H-neurons come from the identification notebooks themselves
(:func:`hneuron_utils.workbook.subruns.identify`), so there is one implementation of the identification. The base model is labelled with the same consistency rule and
sampling settings, but with the paper's base prompt (question + "\\nAnswer:", stop at the first newline).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from hneuron_utils.data import QARecord
from hneuron_utils.stats import rate_with_ci


def rule(params: Mapping[str, Any]) -> Any:
    from hneuron_utils.data.labelling import Rule

    return Rule(params["n_samples"], params["faithful_min_correct"], params["hallucinated_max_correct"])


def sampling(params: Mapping[str, Any]) -> Any:
    from hneuron_utils.text.generation import Sampling

    return Sampling(do_sample=True, temperature=params["temperature"], top_k=params["top_k"],
                    top_p=params["top_p"], max_new_tokens=params["max_new_tokens"])


def transfer_pool(name: str, params: Mapping[str, Any], pool_size: int | None, seed: int,
                  exclude_ids: Sequence[str] = ()) -> Any:
    """The question pool of one backward-transfer set (:func:`~hneuron_utils.probes.generalisation.load_pool` with
    the run's biomedical source and leak policy): ``triviaqa`` minus ``exclude_ids`` (the tuned probe's own
    examples), ``nq_open`` or ``biomed``."""
    from hneuron_utils.probes.generalisation import load_pool

    return load_pool(name, biomed_source=params["biomed_source"], seed=seed, leak_policy=params["leak_policy"],
                     pool_size=pool_size, exclude_ids=exclude_ids)


def greedy_accuracy(loaded: Any, records: Sequence[QARecord], style: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Greedy accuracy (rule judge) on ``records`` with the ``style`` prompt, and the refusal/empty share."""
    from hneuron_utils.judges import RuleJudge
    from hneuron_utils.data.labelling import greedy_answers

    got = greedy_answers(loaded, records, params["max_new_tokens"], params["gen_batch_size"], style=style,
                         progress=False)
    j = RuleJudge()
    vs = [j.judge(r.question, got[r.id]["text"], r.answers) for r in records]
    ci = rate_with_ci([v.correct for v in vs], seed=0)
    return {"questions": len(records), "accuracy": ci.rate, "accuracy_lo": ci.lo, "accuracy_hi": ci.hi,
            "refused or empty": float(np.mean([v.refusal or not got[r.id]["text"] for v, r in zip(vs, records)])),
            "example": f"{records[0].question} → {got[records[0].id]['text']!r}" if records else ""}


ANSWER_ONLY_MAX_WORDS = 10  # "answer-only": one line of at most this many words (the paper's prompt asks for the answer only)
TUNING_CHECKS = ("stops at the end of its turn", "answers in the answer-only format",
                 "TriviaQA accuracy (tuned: chat prompt; base: base prompt)")


def answer_only(text: str) -> bool:
    """Whether a response is answer-only: non-empty, one line, at most :data:`ANSWER_ONLY_MAX_WORDS` words."""
    t = text.strip()
    return bool(t) and "\n" not in t and len(t.split()) <= ANSWER_ONLY_MAX_WORDS


def tuning_check(base: Any, tuned: Any, records: Sequence[QARecord], *, max_new_tokens: int, batch_size: int,
                 n_boot: int, seed: int) -> pd.DataFrame:
    """The manipulation check of notebook 06: is the tuned model measurably instruction-tuned? On the same
    questions, both models answer greedily under the same chat prompt (the paper's answer-only request; the base
    model gets the tuned model's chat template). Three measures, each the tuned model minus the base, paired by
    question (percentile bootstrap), with Wilson intervals for each rate:

    1. the share of answers that stop at an end-of-turn token (not cut by ``max_new_tokens``): must rise;
    2. the share in the answer-only format (:func:`answer_only`): must rise;
    3. TriviaQA accuracy, the tuned model under the chat prompt against the base model under its own base prompt
       (each at its best): must not be detectably lower (the interval's upper end at or above 0).

    ``passed`` per row; the pair passes when every row does."""
    from hneuron_utils.data.labelling import greedy_answers
    from hneuron_utils.judges import RuleJudge
    from hneuron_utils.stats import wilson_interval
    from hneuron_utils.training.forgetting import paired_change

    if not getattr(base.tokenizer, "chat_template", None):  # the base model borrows the tuned model's template
        if not getattr(tuned.tokenizer, "chat_template", None):
            raise ValueError("neither model's tokenizer has a chat template: the tuning check cannot prompt them")
        base.tokenizer.chat_template = tuned.tokenizer.chat_template
    judge = RuleJudge()
    got = {"base, chat": greedy_answers(base, records, max_new_tokens, batch_size, style="chat", progress=False),
           "tuned, chat": greedy_answers(tuned, records, max_new_tokens, batch_size, style="chat", progress=False),
           "base, base prompt": greedy_answers(base, records, max_new_tokens, batch_size, style="base", progress=False)}

    def flags(which: str, what: str) -> list[bool]:
        g = got[which]
        if what == "stop":
            return [bool(g[r.id]["stopped"]) for r in records]
        if what == "format":
            return [answer_only(g[r.id]["text"]) for r in records]
        return [bool(judge.judge(r.question, g[r.id]["text"], r.answers).correct) for r in records]

    rows = []
    for measure, what, base_as, rule in ((TUNING_CHECKS[0], "stop", "base, chat", "rise"),
                                         (TUNING_CHECKS[1], "format", "base, chat", "rise"),
                                         (TUNING_CHECKS[2], "correct", "base, base prompt", "not lower")):
        b, t = flags(base_as, what), flags("tuned, chat", what)
        (blo, bhi), (tlo, thi) = wilson_interval(sum(b), len(b)), wilson_interval(sum(t), len(t))
        d = paired_change(b, t, n_boot, seed)
        passed = d["change lo"] > 0 if rule == "rise" else d["change hi"] >= 0
        rows.append({"measure": measure, "base as": base_as.split(", ")[1].replace("chat", "chat prompt"), "base": sum(b) / len(b), "base lo": blo, "base hi": bhi,
                     "tuned": sum(t) / len(t), "tuned lo": tlo, "tuned hi": thi, "n": len(records),
                     "tuned − base": d["change"], "difference lo": d["change lo"], "difference hi": d["change hi"],
                     "criterion": "the tuned model higher (interval above 0)" if rule == "rise"
                     else "the tuned model not detectably lower (interval reaches 0 or above)", "passed": bool(passed)})
    return pd.DataFrame(rows)


def transfer_table(results: pd.DataFrame) -> pd.DataFrame:
    """AUROC (and accuracy) with intervals per set and classifier, for the figure and the README."""
    cols = ["set", "classifier", "n faithful", "n hallucinated", "auroc", "auroc_lo", "auroc_hi",
            "accuracy", "accuracy_lo", "accuracy_hi"]
    return results[cols].reset_index(drop=True)


# --------------------------------------------------------------------------- notebook 06's steps


def check_pair(base_model: str, tuned_model: str | None, known: Sequence[str]) -> None:
    """A given tuned model must differ from the base and come from the same source (both packaged GGUF
    models or both Hugging Face models): otherwise the weight drift measures quantisation."""
    if tuned_model is None:
        return
    if tuned_model == base_model:
        raise ValueError("tuned_model and base_model are the same model: nothing to compare")
    if (base_model in known) != (tuned_model in known):
        raise ValueError("base_model and tuned_model must come from the same source (both packaged GGUF models or both "
                         "Hugging Face models): otherwise the weight drift of section 5 measures quantisation")


def _tune_config(cfg: Any, pairs: Sequence[Any], *, seed: int) -> Any:
    from hneuron_utils.training import sft

    return sft.TuneConfig(base_model=cfg.base_model, steps=cfg.sft_steps, batch_size=cfg.sft_batch_size,
                          lr=float(cfg.sft_lr), warmup_steps=cfg.sft_warmup_steps, max_tokens=cfg.sft_max_tokens,
                          freeze=tuple(cfg.sft_freeze), seed=seed, data_digest=sft.digest_pairs(pairs),
                          loss=cfg.tune_loss, eaft_alpha=float(cfg.eaft_alpha), eaft_topk=cfg.eaft_topk,
                          autocast=sft.autocast_dtype())


def make_pair(cfg: Any) -> tuple[str, dict | None, dict]:
    """The tuned model: ``cfg.tuned_model`` if given, else ``cfg.base_model`` instruction-tuned here
    (cached by its configuration and data). Returns (its name or folder, the tuning record or None, a
    description with the tuning set's counts, three example pairs and the loss curve's file)."""
    from hneuron_utils.training import sft

    if cfg.tuned_model is not None:
        return cfg.tuned_model, None, {}
    pairs, counts = sft.build_pairs(cfg.sft_qa_items, cfg.sft_instruction_items, cfg.seed)
    tune_cfg = _tune_config(cfg, pairs, seed=cfg.seed)
    out = sft.tuned_dir(tune_cfg)
    record = sft.tune(tune_cfg, pairs, out, checkpoint_every=cfg.sft_checkpoint_every)
    return str(out), record, {"counts": counts, "examples": pairs[:3], "losses": out / "losses.csv"}


def make_reference(cfg: Any, *, progress: bool = True) -> tuple[str | None, dict | None]:
    """The drift's reference: the same tuning as :func:`make_pair` (same pairs, same settings) with the seed
    ``cfg.sft_reference_seed``, so only the order the pairs are seen in differs (cached like the first).
    Returns (its folder, its tuning record), or (None, None) when the pair is given (``tuned_model``) or no
    reference is asked for (``sft_reference_seed`` null)."""
    from hneuron_utils.training import sft

    if cfg.tuned_model is not None or cfg.sft_reference_seed is None:
        return None, None
    if int(cfg.sft_reference_seed) == int(cfg.seed):
        raise ValueError(f"sft_reference_seed ({cfg.sft_reference_seed}) must differ from seed ({cfg.seed}): the "
                         "reference is a second tuning that differs only in its seed")
    pairs, _ = sft.build_pairs(cfg.sft_qa_items, cfg.sft_instruction_items, cfg.seed)  # the same pairs
    tune_cfg = _tune_config(cfg, pairs, seed=int(cfg.sft_reference_seed))
    out = sft.tuned_dir(tune_cfg)
    return str(out), sft.tune(tune_cfg, pairs, out, checkpoint_every=cfg.sft_checkpoint_every, progress=progress)


def eval_records(cfg: Any, params: Mapping[str, Any]) -> list[QARecord]:
    """The ``origin_eval_size`` seeded TriviaQA questions (leak policy applied) of 06's accuracy and tuning check."""
    from hneuron_utils.data import load_dataset, sample
    from hneuron_utils.data.labelling import apply_leak_policy

    recs, _ = apply_leak_policy(sample(load_dataset("triviaqa"), cfg.origin_eval_size, cfg.seed + 6), params["leak_policy"])
    return list(recs)


def accuracy_before_after(cfg: Any, tuned_name: str, params: Mapping[str, Any]) -> tuple[pd.DataFrame, Any]:
    """Greedy TriviaQA accuracy of the base model (base prompt) and of the tuned model (chat prompt) on
    the same ``origin_eval_size`` seeded questions. Returns (the table, the loaded base model)."""
    import gc

    from hneuron_utils import models

    recs = eval_records(cfg, params)
    base = models.load_model(cfg.base_model, dtype=cfg.dtype, device=cfg.device)
    rows = [{"model": f"base ({cfg.base_model})", "prompt": "base: question + \\nAnswer:",
             **greedy_accuracy(base, recs, "base", params)}]
    tuned = models.load_model(tuned_name, dtype=cfg.dtype, device=cfg.device)
    rows.append({"model": "tuned", "prompt": "chat: the paper's answer-only prompt", **greedy_accuracy(tuned, recs, "chat", params)})
    del tuned
    gc.collect()
    return pd.DataFrame(rows), base


def load_tuned_probe(origin_dir: Any, tuned_name: str) -> tuple[pd.DataFrame, dict, dict, pd.DataFrame]:
    """The tuned model's H-neurons, classifiers (checked to belong to it) and probe examples."""
    from hneuron_utils.probes.probe import load_classifiers

    hn = pd.read_csv(origin_dir / "data" / "03_h_neurons.csv")
    clfs, meta = load_classifiers(origin_dir / "data" / "03_classifiers.npz")
    if meta["model"] != tuned_name:
        raise ValueError(f"{origin_dir}/data/03_classifiers.npz belongs to {meta['model']}, not {tuned_name}")
    return hn, clfs, meta, pd.read_json(origin_dir / "data" / "01_examples.jsonl", lines=True)


def base_test_sets(base: Any, base_cett: Any, cfg: Any, params: Mapping[str, Any], exclude_ids: Sequence[str]
                   ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, dict], dict[str, pd.DataFrame]]:
    """Per set of ``origin_datasets``: the base model's balanced test set (base prompt, the tuned run's
    rule and sampling) and its answer-token CETT. Returns (features, size summaries, kept examples)."""
    from hneuron_utils.data.labelling import test_set
    from hneuron_utils.probes.generalisation import answer_features, set_summary

    the_rule, samp = rule(params), sampling(params)
    features, sizes, kept_sets = {}, {}, {}
    for name in cfg.origin_datasets:
        pool = transfer_pool(name, params, cfg.origin_pool_size, cfg.seed, exclude_ids=exclude_ids)
        looked, examples, sz = test_set(base, pool.records, pool.judge, the_rule, samp, n_per_class=cfg.origin_n_per_class, seed=cfg.seed,
                                        batch_size=params["gen_batch_size"], screen=params["screen"],
                                        screen_max_new_tokens=params["screen_max_new_tokens"],
                                        first_round=params["sample_first_round"], style="base",
                                        span_rule=params["answer_span"])
        kept, ans, lost, _ = answer_features(base_cett, examples, params["cett_batch_size"], style="base")
        features[pool.label] = (ans, kept.label.to_numpy() if len(kept) else np.zeros(0, int))
        sizes[pool.label] = {**set_summary(looked, sz, cfg.origin_n_per_class, len(pool.records), params["n_samples"]),
                             "examples lost (no answer token)": len(lost)}
        kept_sets[name] = kept
    return features, sizes, kept_sets
