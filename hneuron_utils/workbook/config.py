"""One configuration schema for every notebook, loaded from profiles in ``params/``.

A profile is a YAML mapping of parameter names to values. ``params/default.yaml`` names every
parameter; other profiles override a subset of it. Every notebook's ``parameters`` cell declares the
parameters it uses as literals, and the next cell calls :func:`from_notebook` which validates them
(unknown names, wrong types, values out of range) and returns a :class:`Config` that only exposes the
parameters that notebook declared.
"""

from __future__ import annotations

import ast
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml

from hneuron_utils.paths import project_root


class ConfigError(ValueError):
    """A profile or a notebook's parameters are invalid."""


@dataclass(frozen=True)
class Param:
    """One parameter of the schema."""

    name: str
    types: tuple[type, ...]
    doc: str
    paper: str = ""
    choices: tuple[Any, ...] | None = None
    check: Callable[[Any], str | None] | None = None
    nullable: bool = False


def _positive(v: Any) -> str | None:
    return None if v > 0 else "must be > 0"


def _non_negative(v: Any) -> str | None:
    return None if v >= 0 else "must be >= 0"


def _probability(v: Any) -> str | None:
    return None if 0.0 < v <= 1.0 else "must be in (0, 1]"


_NUM = (int, float)


def _train_layers(v: Any) -> str | None:
    if isinstance(v, str):
        return None if v == "h_layers" else "must be a positive integer or 'h_layers'"
    return _positive(v)


def _gen_datasets(v: Any) -> str | None:
    known = ("nq_open", "biomed", "nonexist", "nonexist_paper")
    if not v or len(set(v)) != len(v) or not all(isinstance(x, str) and x in known for x in v):
        return f"must be a non-empty list of distinct names from {list(known)}"
    return None


def _alphas(v: Any) -> str | None:
    if not v or not all(isinstance(a, (int, float)) and a >= 0 for a in v) or len(set(v)) != len(v):
        return "must be a non-empty list of distinct numbers >= 0"
    return None if 1 in v else "must include 1 (the unmodified model, the baseline of every comparison)"


def _fractions(v: Any) -> str | None:
    if not v or len(set(v)) != len(v) or not all(isinstance(a, (int, float)) and 0 < a <= 1 for a in v):
        return "must be a non-empty list of distinct numbers in (0, 1]"
    return None


def _strengths(v: Any) -> str | None:
    if not v or not all(isinstance(a, (int, float)) and a > 0 for a in v) or sorted(set(v)) != list(v):
        return "must be a non-empty list of distinct numbers > 0 in ascending order"
    return None


def _oc_benchmarks(v: Any) -> str | None:
    known = ("falseqa", "counterfactual", "sycophancy", "jailbreak")
    if not v or len(set(v)) != len(v) or not all(isinstance(x, str) and x in known for x in v):
        return f"must be a non-empty list of distinct names from {list(known)}"
    return None


def _oc_items(v: Any) -> str | None:
    known = ("falseqa", "counterfactual", "sycophancy", "jailbreak")
    if not v or not all(k in known and isinstance(n, int) and not isinstance(n, bool) and n > 0 for k, n in v.items()):
        return f"must map benchmark names from {list(known)} to positive integers"
    return None


def _control_alphas(v: Any) -> str | None:
    if not isinstance(v, list) or len(set(v)) < 2 or len(set(v)) != len(v) or \
            not all(isinstance(a, (int, float)) and not isinstance(a, bool) and a >= 0 for a in v):
        return "must be a list of at least two distinct numbers >= 0 (a subset of alphas)"
    return None


def _prompt_chars(v: Any) -> str | None:
    known = ("falseqa", "counterfactual", "sycophancy", "jailbreak")
    pos = lambda n: isinstance(n, int) and not isinstance(n, bool) and n > 0  # noqa: E731
    if isinstance(v, dict):
        ok = v and all(k in known and pos(n) for k, n in v.items())
        return None if ok else f"must map benchmark names from {list(known)} to positive integers"
    return None if pos(v) else "must be a positive integer or a {benchmark: positive integer} mapping"


def _biomed_source(v: Any) -> str | None:
    if v in ("standin", "standin_large") or Path(v).expanduser().is_file():
        return None
    return (f"must be 'standin', 'standin_large' or the path of an existing BioASQ file; {v!r} is none of these "
            "(BioASQ is not shipped: register at bioasq.org and download it)")

def _sft_freeze(v: Any) -> str | None:
    from hneuron_utils.training.sft import FREEZABLE

    if len(set(v)) != len(v) or not all(isinstance(x, str) and x in FREEZABLE for x in v):
        return f"must be a list of distinct names from {list(FREEZABLE)}"
    return None


_NOT_OVERRIDABLE = ("model", "run_name", "figures_dir")


def _origin_overrides(v: Any) -> str | None:
    bad = [k for k in v if k in _NOT_OVERRIDABLE]
    if bad:
        return f"may not set {bad}: notebook 06 sets the tuned model, its run name and figure folder itself"
    try:
        validate_mapping(v)
    except ConfigError as e:
        return f"holds an invalid entry ({e})"
    return None


def _origin_datasets(v: Any) -> str | None:
    known = ("triviaqa", "nq_open", "biomed")
    if not v or len(set(v)) != len(v) or not all(isinstance(x, str) and x in known for x in v):
        return f"must be a non-empty list of distinct names from {list(known)}"
    return None


SCHEMA: tuple[Param, ...] = (
    # --- run bookkeeping -------------------------------------------------------------------
    Param("run_name", (str,), "Name of this run: outputs go to results/<run_name>/."),
    Param("figures_dir", (str,), "Where figures are written, relative to the project root "
          "(the default run writes to figures/; other runs inside their results folder).", nullable=True),
    Param("seed", (int,), "Master random seed; every stage derives its own seed from it.", check=_non_negative),
    # --- model -----------------------------------------------------------------------------
    Param("model", (str,), "Short name from the asset registry, 'tiny-random', a Hugging Face model id, "
          "or a local directory.", paper="Mistral-7B-v0.3, Gemma-3, Llama-3.x instruct models"),
    Param("dtype", (str,), "Weights and activations dtype; 'auto' = bfloat16 where the hardware supports it.",
          choices=("auto", "bfloat16", "float32", "float16")),
    Param("device", (str,), "'auto' = cuda if available, else cpu.", choices=("auto", "cpu", "cuda")),
    # --- beyond one machine: where activations are read and samples drawn ----------------------
    Param("activations_backend", (str,), "Where the CETT passes run (02's extraction, 03's suppression check): "
          "'local' = this machine; 'ndif' = nnsight's remote service NDIF (`trace(..., remote=True)`, key from "
          "NDIF_API_KEY; only hosted models; the per-neuron reduction runs there and only reduced features come "
          "back); 'ndif-local' = the same serialised trace run in this process with the workbook's modules "
          "hidden (nnsight's `remote=\"local\"`): a check, offline, that the remote trace runs.",
          paper="local GPUs", choices=("local", "ndif", "ndif-local")),
    Param("sampling_backend", (str,), "Where 01's and 04's answers are sampled: 'local' = this machine; 'openai' = "
          "an OpenAI-compatible server (vLLM's `vllm serve`, `transformers serve`, llama.cpp's server) through its "
          "completions endpoint, the chat template applied here so the prompt text is the local path's.",
          paper="vLLM (the official code samples with it)", choices=("local", "openai")),
    Param("sampling_base_url", (str,), "With sampling_backend 'openai': the server's base URL, e.g. "
          "http://127.0.0.1:8000/v1.", paper="—", nullable=True),
    Param("sampling_served_model", (str,), "With sampling_backend 'openai': the name the server serves the model "
          "under (null = the `model` parameter).", paper="—", nullable=True),
    Param("sampling_concurrency", (int,), "With sampling_backend 'openai': requests in flight at once (a vLLM "
          "server batches them).", paper="—", check=_positive),
    # --- 00 tour ---------------------------------------------------------------------------
    Param("tour_question", (str,), "The question asked in the tour's one chat turn."),
    Param("tour_layer", (int,), "Layer whose down_proj input the tour reads (-1 = the middle layer)."),
    Param("max_new_tokens", (int,), "Cap on generated tokens per answer.", paper="50", check=_positive),
    # --- 01 dataset ------------------------------------------------------------------------
    Param("pool_size", (int,), "TriviaQA questions in the pool (null = all 8,837 packaged ones).",
          paper="10,000 (train split)", check=_positive, nullable=True),
    Param("leak_policy", (str,), "Gold aliases already contained in the question: drop those aliases "
          "(and questions left with none), drop those questions, or keep them.", paper="keep (not handled)",
          choices=("drop_aliases", "drop_questions", "keep")),
    Param("answer_span", (str,), "Which response tokens CETT averages over, found the same way for both "
          "classes: answer_phrase = the response's answer phrase (the first sentence without a restatement of "
          "the question, framing or trailing punctuation); whole_response = the whole response; alias_or_whole "
          "= the workbook's earlier rule, kept for comparison (the matched gold alias for a correct response, "
          "the whole response for a wrong one: the span differs by class).",
          paper="the answer tokens of every response, marked by an LLM (GPT-4o)",
          choices=("answer_phrase", "whole_response", "alias_or_whole")),
    Param("screen", (bool,), "Greedy-screen the pool and sample K only for questions that can still pass "
          "the consistency rule.", paper="false (all questions sampled)"),
    Param("screen_max_new_tokens", (int,), "Cap on the greedy screening answer's tokens (answers to the "
          "answer-only prompt are short; the cap stops the rare rambling answer from holding up a batch).",
          paper="— (no screen)", check=_positive),
    Param("screen_check_size", (int,), "Questions sampled K times whatever their greedy answer, to measure "
          "what the screen misses.", paper="—", check=_non_negative),
    Param("n_samples", (int,), "K, samples per question.", paper="10", check=_positive),
    Param("sample_first_round", (int,), "Draw this many of the K samples first and the rest only for questions "
          "that can still pass the rule (0 = all K at once). Samples are seeded per index, so the ones drawn "
          "are the same either way.", paper="0 (all K)", check=_non_negative),
    Param("temperature", _NUM, "Sampling temperature.", paper="1.0", check=_positive),
    Param("top_k", (int,), "Sampling top-k.", paper="50", check=_positive),
    Param("top_p", _NUM, "Sampling top-p (nucleus).", paper="0.9", check=_probability),
    Param("faithful_min_correct", (int,), "A question is faithful if at least this many of K samples are "
          "correct.", paper="10 (= K)", check=_positive),
    Param("hallucinated_max_correct", (int,), "A question is hallucinated if at most this many of K samples "
          "are correct.", paper="0", check=_non_negative),
    Param("n_train_per_class", (int,), "Training questions per class.", paper="1,000", check=_positive),
    Param("n_test_per_class", (int,), "Test questions per class.", paper="1,000", check=_positive),
    Param("gen_batch_size", (int,), "Sequences decoded together (prompts × samples).", paper="—",
          check=_positive),
    # --- 02 CETT ---------------------------------------------------------------------------
    Param("cett_batch_size", (int,), "Examples per teacher-forced forward pass.", paper="1 (one pass per "
          "example)", check=_positive),
    Param("cett_dtype", (str,), "Precision of the teacher-forced CETT pass ('auto' = the model's dtype). In "
          "bfloat16 the features of one example change with the batch it shares (matmul kernels differ by shape), "
          "so the H-neuron set changes between runs; float32 features do not.", paper="the model's dtype",
          choices=("auto", "float32", "bfloat16")),
    Param("repro_check_size", (int,), "Examples re-extracted one at a time in 02 to show that the features do not "
          "depend on the batch (0 = skip).", paper="—", check=_non_negative),
    # --- 03 probe --------------------------------------------------------------------------
    Param("probe_mode", (str,), "Training mode of the L1 probe.", paper="3-vs-1", choices=("3-vs-1", "1-vs-1")),
    Param("probe_Cs", (list,), "Inverse L1 strengths tried.", paper="a grid (values not reported)",
          check=lambda v: None if v and all(isinstance(c, (int, float)) and c > 0 for c in v)
          else "must be a non-empty list of positive numbers"),
    Param("probe_tol", _NUM, "Stopping tolerance of the L1 fit (liblinear); tight enough that the fit "
          "converges and its positive set does not depend on the solver seed.", paper="1e-4 (scikit-learn's "
          "default, which stops early on CETT features)", check=_positive),
    Param("c_rule", (str,), "How C is chosen: best held-out accuracy, or the paper's held-out accuracy + "
          "TriviaQA accuracy with the selected neurons suppressed.", paper="paper",
          choices=("held_out", "paper")),
    Param("val_fraction", _NUM, "Share of training questions held out to choose C.", paper="not reported",
          check=lambda v: None if 0 < v < 1 else "must be in (0, 1)"),
    Param("suppress_eval_size", (int,), "Greedy-correct TriviaQA questions (not in the dataset) answered with "
          "each C's neurons suppressed, for the paper's rule.", paper="TriviaQA (size not reported)",
          check=_positive),
    Param("random_draws", (int,), "Random neuron sets drawn for the baseline.", paper="not reported",
          check=_positive),
    Param("subset_C", _NUM, "L2 strength of the classifier refit on a neuron subset (H-neurons or random), on "
          "standardised features.", paper="not reported", check=_positive),
    Param("n_bootstrap", (int,), "Bootstrap resamples for 95% intervals.", paper="— (no intervals)",
          check=_positive),
    Param("stability_boots", (int,), "Probe refits on bootstrap resamples of the training questions, for the "
          "Jaccard stability of the H-neuron set.", paper="—", check=_positive),
    # --- 04 generalisation -----------------------------------------------------------------
    Param("gen_datasets", (list,), "Generalisation sets notebook 04 evaluates, in this order.",
          paper="NQ-Open, BioASQ, NonExist", check=_gen_datasets),
    Param("gen_n_per_class", (int,), "Test questions per class in each generalisation set (the largest "
          "balanced set the model allows, if fewer).", paper="not reported (balanced)", check=_positive),
    Param("gen_pool_size", (int,), "Questions looked at per NQ-Open / biomedical pool at most (a seeded subset; "
          "null = the whole pool). NonExist's pool size is nonexist_size.", paper="whole sets (sizes not reported)",
          check=_positive, nullable=True),
    Param("biomed_source", (str,), "'standin' = the packaged biomedical stand-in (145 short MedQA/MedMCQA-derived "
          "questions, redistributable); 'standin_large' = those plus 167 MedQA clinical vignettes asked as open "
          "questions (data/README.md); otherwise the path of your BioASQ file (BioASQ JSON or id/question/answers "
          "JSONL).", paper="BioASQ", check=_biomed_source),
    Param("nonexist_size", (int,), "NonExist questions generated (that set's pool).",
          paper="HalluLens NonExist (generated; size not reported)", check=_positive),
    Param("nonexist_system_prompt", (str,), "System turn of the 'nonexist' set (null = the paper's prompt, the "
          "chat template's default system turn). An instruction that permits abstaining makes both classes occur "
          "(without it the default model abstains on almost no NonExist question); 'nonexist_paper' in "
          "gen_datasets keeps the paper-prompt set beside it. TriviaQA's test answers are also scored under "
          "this system turn, to separate the prompt's shift from the set's.", paper="none (plain questions)",
          check=lambda v: None if v.strip() else "must be a non-empty instruction or null", nullable=True),
    Param("gen_faithful_min_correct", (int,), "Test-set rule of notebook 04 (06 uses its tuned run's rule): a question is faithful if at "
          "least this many of K samples are correct (hallucinated: hallucinated_max_correct, as on TriviaQA). "
          "Relaxed where the paper's rule leaves a class too small; the size table also counts the questions at K "
          "of K.", paper="10 of 10 (the TriviaQA rule)", check=_positive),
    # --- 05 intervention -------------------------------------------------------------------
    Param("alphas", (list,), "Scales α applied to the neurons' activations (must include 1 = unmodified).",
          paper="{0, 0.5, 1, 1.5, 2, 2.5, 3}", check=_alphas),
    Param("oc_benchmarks", (list,), "Over-compliance benchmarks notebook 05 runs, in this order.",
          paper="FalseQA, FaithEval (counterfactual), Sycophancy, Jailbreak", check=_oc_benchmarks),
    Param("oc_items", (dict,), "Items per benchmark (a seeded subset): {benchmark: count} for every benchmark in "
          "oc_benchmarks. Counterfactual and jailbreak cost most per item on a CPU (long prompts prefilled under every "
          "condition; jailbreak's longer cap).", paper="whole sets (jailbreak: 390)", check=_oc_items),
    Param("oc_counterfactual_prompt", (str,), "Counterfactual-context prompt: 'paper' asks for the answer from the "
          "context (the paper's FaithEval setting; a context-following model sits at the ceiling); "
          "'anti_compliance' asks for the real-world answer when the context contradicts it, so compliance is "
          "following the context against the instruction; 'unreliable_hint' puts the question first and the context "
          "after it as a hint that may be wrong (off the ceiling on items the model knows, see "
          "oc_counterfactual_screen).", paper="paper",
          choices=("paper", "anti_compliance", "unreliable_hint")),
    Param("oc_counterfactual_screen", (bool,), "Counterfactual items: true = only items whose real-world answer the "
          "unmodified model names closed-book (greedy), screened in seeded order from the packaged pool of 7,282 "
          "until oc_items are found (a model that does not know the answer can only follow the context, so its "
          "compliance says nothing about over-compliance); false = a seeded sample of the items as they come.",
          paper="false (FaithEval's items, whatever the model knows)"),
    Param("oc_jailbreak_max_new_tokens", (int,), "Cap on generated tokens for jailbreak responses (a short cap "
          "can stop before the payload).", paper="256", check=_positive),
    Param("oc_max_prompt_chars", (int, dict), "Items whose user message is longer are skipped (counted), to bound "
          "prefill time on a CPU: one cap for every benchmark or {benchmark: cap} for each in oc_benchmarks.",
          paper="— (no cap)", check=_prompt_chars),
    Param("oc_control_alphas", (list,), "Scales α of the control (random and layer-matched) sets: a subset of "
          "alphas with at least two values (α = 1, the unmodified model shared by every set, is always in). A slope's variance falls with the spread of α, so the ends of the range "
          "buy nearly all of a control's power ({0, 1, 3} keeps 93% of the 4-value grid's Σ(α−ᾱ)² at 3/4 of its "
          "conditions); the H-neuron minus random slope is fitted on this grid for both.",
          paper="— (no random sets in the paper's intervention)", check=_control_alphas),
    Param("oc_random_draws", (int,), "Random neuron sets (same size as the H-neurons) scaled at every α of "
          "oc_control_alphas.",
          paper="not reported", check=_positive),
    Param("oc_layer_matched_draws", (int,), "Random neuron sets with the H-neurons' count in every layer, scaled at "
          "every α of oc_control_alphas beside the uniform draws (0 = none).", paper="not reported", check=_non_negative),
    Param("oc_engine", (str,), "'batched' = every condition of a group of items in one decoding batch (per-row "
          "scales); 'per-condition' = one condition after another. Same cache; the tests find the same tokens in "
          "float32 (in bfloat16 the batch's composition can change a few).",
          paper="— (one condition at a time)", choices=("batched", "per-condition")),
    Param("oc_max_new_tokens", (int,), "Cap on generated tokens per response (jailbreak: oc_jailbreak_max_new_tokens).",
          paper="256 (FaithEval)",
          check=_positive),
    Param("side_items", (int,), "Greedy-correct TriviaQA questions outside the dataset answered at every α "
          "(accuracy side effect).", paper="—", check=_positive),
    Param("ppl_texts", (int,), "Held-out passages whose perplexity is measured at every α.", paper="—",
          check=_positive),
    Param("truncation_check_items", (int,), "Responses re-generated with truncation_check_tokens to check that "
          "verdicts do not hinge on the token cap.", paper="—", check=_non_negative),
    Param("truncation_check_tokens", (int,), "The longer cap of the truncation check (above both response caps).",
          paper="—",
          check=_positive),
    # --- 06 origin -------------------------------------------------------------------------
    Param("base_model", (str,), "The base model of the base/instruct pair (registry name, HF id or local "
          "directory).", paper="Mistral-7B-v0.3, Mistral-Small-3.1-24B, Gemma-3, Llama-3.x base models"),
    Param("tuned_model", (str,), "The instruction-tuned model of the pair; null = notebook 06 tunes one from "
          "base_model (offline no pair exists).", paper="the vendors' instruct models", nullable=True),
    Param("sft_qa_items", (int,), "Short-answer QA pairs in the tuning set (TriviaQA's test split, never "
          "evaluated on).", paper="— (the vendors' own tuning)", check=_positive),
    Param("sft_instruction_items", (int,), "Generated instructions (arithmetic, spelling, counting, sorting) in "
          "the tuning set.", paper="—", check=_non_negative),
    Param("sft_steps", (int,), "Optimiser steps of the tuning.", paper="—", check=_positive),
    Param("sft_batch_size", (int,), "Conversations per tuning step.", paper="—", check=_positive),
    Param("sft_lr", _NUM, "Peak learning rate (AdamW; linear warm-up, cosine decay to 10%).", paper="—",
          check=_positive),
    Param("sft_warmup_steps", (int,), "Warm-up steps of the learning rate.", paper="—", check=_positive),
    Param("sft_max_tokens", (int,), "Tokens per tuning conversation at most (longer ones are cut).", paper="—",
          check=_positive),
    Param("sft_freeze", (list,), "Parameter groups kept frozen during tuning.", paper="— (full fine-tuning by "
          "the vendors)", check=_sft_freeze),
    Param("sft_checkpoint_every", (int,), "Save a resumable checkpoint every this many steps (0 = never).",
          paper="—", check=_non_negative),
    Param("sft_reference_seed", (int,), "Notebook 06 tunes a second model with this seed (the same pairs and "
          "settings; only the order the pairs are seen in differs): the reference the drift's size is read "
          "against. null = no reference (saves one tuning).", paper="— (the paper reads vendor checkpoints "
          "without a reference)", nullable=True, check=_non_negative),
    Param("tune_loss", (str,), "Loss of notebook 06's instruction tuning: plain cross-entropy or entropy-adaptive "
          "(notebook 08 compares both).", paper="sft (the vendors' tuning)", choices=("sft", "eaft")),
    Param("origin_profile", (str,), "Profile whose values notebook 06 runs notebooks 01–03 with on the tuned "
          "model (origin_overrides on top; model and run name set by 06).", paper="—"),
    Param("origin_overrides", (dict,), "Parameters of the tuned model's 01–03 run that differ from "
          "origin_profile (e.g. a relaxed consistency rule for a small model).", paper="—",
          check=_origin_overrides),
    Param("origin_eval_size", (int,), "TriviaQA questions answered greedily by the base model (base prompt) and "
          "the tuned model (chat prompt), before/after accuracy.", paper="—", check=_positive),
    Param("origin_datasets", (list,), "Sets on which the tuned model's probe is applied to the base model.",
          paper="TriviaQA, NQ-Open, BioASQ", check=_origin_datasets),
    Param("origin_n_per_class", (int,), "Base-model test examples per class in each set (balanced; the "
          "largest the model allows, if fewer).", paper="not reported", check=_positive),
    Param("origin_pool_size", (int,), "Questions looked at per set at most (a seeded subset; null = all).",
          paper="whole sets", check=_positive, nullable=True),
    Param("n_permutations", (int,), "Random neuron sets in the permutation test of parameter inertia.",
          paper="— (t-test only)", check=_positive),
    # --- 07 streaming monitor (the "paper" column names the streaming-detection paper, arXiv 2601.02170) --
    Param("monitor_questions", (int,), "TriviaQA questions unused by notebooks 01–03 answered in long form "
          "(a seeded draw), split by question into training and held-out streams.",
          paper="— (its own chain-of-thought sets)", check=_positive),
    Param("monitor_train_fraction", _NUM, "Share of the questions whose streams train the probes.", paper="—",
          check=lambda v: None if 0 < v < 1 else "must be in (0, 1)"),
    Param("monitor_suffix", (str,), "Appended to each question: asks for the answer first, then a short "
          "explanation (steps = sentences).", paper="— (long chain-of-thought answers)"),
    Param("monitor_max_new_tokens", (int,), "Cap on each long-form answer's tokens.", paper="—", check=_positive),
    Param("monitor_batch_size", (int,), "Answers decoded together in the monitored loop.", paper="—",
          check=_positive),
    Param("monitor_resid_layer", (int,), "Residual layer read beside the H-neurons (-1 = the best layer of "
          "notebook 03's residual probe).", paper="the model's hidden states"),
    Param("step_sharpness", _NUM, "Step pooling weights ∝ exp(sharpness·u), u from 0 to 1 over a step.",
          paper="3", check=_positive),
    Param("probe_l2", _NUM, "L2 penalty of the step and prefix probes.", paper="1e-4", check=_non_negative),
    Param("sync_weight", _NUM, "Weight of L_sync in the prefix probe's loss.", paper="120", check=_non_negative),
    Param("last_step_weight", _NUM, "Weight of the last step in L_anchor.", paper="30", check=_positive),
    Param("early_positions", (list,), "Tokens generated at which the early-detection AUROC is read.",
          paper="— (step-level AUC)", check=lambda v: None if v and all(isinstance(x, int) and x > 0 for x in v)
          else "must be a non-empty list of positive token counts"),
    Param("guard_coverage", _NUM, "The guards' τ is set on training streams so that an abstaining guard "
          "answers this share of them; risks are compared at this coverage.", paper="—", check=_probability),
    Param("guard_max_resamples", (int,), "Times the resampling guard redraws a flagged sentence before it "
          "abstains.", paper="— (latent backtracking: resample)", check=_non_negative),
    Param("precision_check_size", (int,), "Held-out streams whose H-neuron features are recomputed in float32 "
          "(teacher-forced) to check the bfloat16 monitor against notebook 03's precision.", paper="—",
          check=_positive),
    Param("bench_answers", (int,), "Greedy answers decoded with and without the monitor to measure its "
          "overhead.", paper="—", check=_positive),
    # --- 08 entropy-adaptive fine-tuning (the "paper" column names EAFT, arXiv 2601.02151, and its reference code) --
    Param("eaft_alpha", _NUM, "Exponent α of the EAFT weight (H_top-k / 3.0)^α (0 = plain cross-entropy).",
          paper="1 (LLaMA-Factory's eaft_alpha)", check=_non_negative),
    Param("eaft_topk", (int,), "Logits whose renormalised softmax gives the EAFT entropy.", paper="20",
          check=_positive),
    Param("ft_train_items", (int,), "Medical multiple-choice items in the tuning set (a seeded draw; each seen "
          "once at most).", paper="— (its own math and medical sets)", check=_positive),
    Param("ft_eval_items", (int,), "Held-out medical multiple-choice items: the new domain's accuracy before "
          "and after tuning.", paper="—", check=_positive),
    Param("ft_steps", (int,), "Optimiser steps of each tuning (SFT and EAFT alike).", paper="—", check=_positive),
    Param("ft_batch_size", (int,), "Conversations per tuning step.", paper="—", check=_positive),
    Param("ft_lr_grid", (list,), "Peak learning rates tried (AdamW; linear warm-up, cosine decay to 10%): each "
          "SFT tuning on the fitting part of the tuning items is scored on the validation part every ft_eval_every "
          "steps, and the learning rate and step with the most validation items right are kept for both losses.",
          paper="one fixed rate per model (EAFT; not reported for a 1.5B model)",
          check=lambda v: None if v and len(set(v)) == len(v) and all(isinstance(x, (int, float)) and x > 0 for x in v)
          else "must be a non-empty list of distinct positive numbers"),
    Param("ft_val_items", (int,), "Tuning items held back as the validation split that chooses the learning rate "
          "and the steps (never the held-out items).", paper="—", check=_positive),
    Param("ft_eval_every", (int,), "Validation score every this many tuning steps (and before the first).",
          paper="—", check=_positive),
    Param("ft_target_format", (str,), "How a tuning answer is written and where the letter is read: answer_letter "
          "= \"Answer: C. text\" (the letter read after a prefilled \"Answer:\", for every model); letter_text = "
          "\"C. text\" (read as the first answer token; the earlier format, whose first token took over free-form "
          "answers).", paper="— (its sets' own answer formats)", choices=("answer_letter", "letter_text")),
    Param("ft_warmup_steps", (int,), "Warm-up steps of the learning rate.", paper="—", check=_positive),
    Param("ft_max_tokens", (int,), "Tokens per tuning conversation at most (longer ones are cut).", paper="—",
          check=_positive),
    Param("ft_train_layers", (int, str), "Whose MLPs (gate, up, down) are trained, all else frozen: an integer k = "
          "the last k layers; 'h_layers' = every layer that holds one of notebook 03's H-neurons (so the drift "
          "test always has H-neurons to test, whichever layers a run's set falls in).",
          paper="all parameters (full fine-tuning)", check=_train_layers),
    Param("ft_letter_check_items", (int,), "Held-out items answered greedily in full by each model, to check that "
          "the most likely first-token letter is the option the answer names.", paper="—", check=_positive),
    Param("ft_qa_items", (int,), "TriviaQA questions of each general-knowledge set: ones the model answered "
          "right before (forgetting) and ones it answered wrong (hallucination rate), unused by notebook 01's "
          "dataset.", paper="— (general benchmarks)", check=_positive),
    Param("ft_ppl_texts", (int,), "Held-out plain-text passages whose perplexity measures drift from general text.",
          paper="—", check=_positive),
    Param("conflict_pairs", (int,), "Tuning pairs whose tokens are scored by the untuned model for the "
          "confident-conflict analysis.", paper="— (all training tokens)", check=_positive),
    Param("conflict_max_prob", _NUM, "A confident conflict: the target token's probability below this ...",
          paper="— (low probability; the paper's figure uses quantiles)", check=_probability),
    Param("conflict_max_entropy", _NUM, "... and the normalised top-k entropy H_k / ln k below this.",
          paper="— (low entropy)", check=_probability),
    Param("ft_eval_batch_size", (int,), "Prompts per forward pass when scoring (multiple choice, perplexity, "
          "conflicts).", paper="—", check=_positive),
    # 09 · concept injection (Lindsey 2025) and the H-neuron link
    Param("intro_concepts", (int,), "Concept words injected (the first of data/concepts.json), one trial number each.",
          paper="50 (Lindsey 2025)", check=_positive),
    Param("intro_baseline_words", (int,), "Baseline words whose mean activation is subtracted from a concept's.",
          paper="100 (Lindsey 2025)", check=_positive),
    Param("intro_depths", (list,), "Injection layers as fractions of depth (layer = round(f · layers) − 1).",
          paper="all layers swept; best at about 2/3", check=_fractions),
    Param("intro_strengths", (list,), "Injection strengths: the vector's norm as a multiple of the layer's median "
          "residual norm.", paper="1, 2, 4, 8 × the concept vector (not normalised)", check=_strengths),
    Param("intro_max_new_tokens", (int,), "Greedy tokens of each trial's response.", paper="100", check=_positive),
    Param("intro_batch_size", (int,), "Trials decoded together (every condition in one batch).", paper="—",
          check=_positive),
    Param("conf_items", (int,), "Held-out TriviaQA questions per outcome (answered right / wrong by notebook 01's "
          "greedy screen) whose stated confidence is asked.", paper="— (not in the papers)", check=_positive),
    Param("conf_alphas", (list,), "Scales α of the H-neurons (and of conf_random_draws random sets of the same size) while the model "
          "states its confidence (must include 1).", paper="— (05's range 0–3)", check=_alphas),
    Param("conf_max_new_tokens", (int,), "Greedy tokens of the confidence reply.", paper="—", check=_positive),
    Param("conf_random_draws", (int,), "Random neuron sets (same size as the H-neurons) scaled at every α of "
          "conf_alphas beside the H-neurons: the control a shift of P(yes) is read against.",
          paper="— (not in the papers)", check=_positive),
)

_BY_NAME = {p.name: p for p in SCHEMA}
PARAM_NAMES: tuple[str, ...] = tuple(p.name for p in SCHEMA)


def _suggest(name: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


def validate_value(name: str, value: Any) -> Any:
    """Check one value against the schema; return it (ints are accepted where floats are)."""
    if name not in _BY_NAME:
        raise ConfigError(f"Unknown parameter '{name}'.{_suggest(name, PARAM_NAMES)} "
                          f"Valid parameters: {', '.join(sorted(PARAM_NAMES))}")
    p = _BY_NAME[name]
    if value is None:
        if p.nullable:
            return None
        raise ConfigError(f"Parameter '{name}' may not be null ({p.doc})")
    if isinstance(value, bool) and bool not in p.types:
        raise ConfigError(f"Parameter '{name}' must be {'/'.join(t.__name__ for t in p.types)}, got a bool")
    if not isinstance(value, p.types):
        raise ConfigError(f"Parameter '{name}' must be {'/'.join(t.__name__ for t in p.types)}, "
                          f"got {type(value).__name__} {value!r}")
    if p.choices is not None and value not in p.choices:
        raise ConfigError(f"Parameter '{name}' must be one of {list(p.choices)}, got {value!r}")
    if p.check is not None and (msg := p.check(value)):
        raise ConfigError(f"Parameter '{name}' {msg}, got {value!r}")
    return value


def validate_mapping(values: Mapping[str, Any]) -> dict[str, Any]:
    """Validate every entry; unknown names fail and list the valid ones."""
    unknown = [k for k in values if k not in _BY_NAME]
    if unknown:
        hints = "".join(_suggest(k, PARAM_NAMES) for k in unknown)
        raise ConfigError(f"Unknown parameter(s) {unknown}.{hints} "
                          f"Valid parameters: {', '.join(sorted(PARAM_NAMES))}")
    return {k: validate_value(k, v) for k, v in values.items()}


def profile_path(profile: str | Path) -> Path:
    """Resolve a profile name ('smoke') or a path to a YAML file."""
    p = Path(profile)
    if p.suffix in (".yaml", ".yml"):
        cand = (p if p.is_absolute() or p.exists() else project_root() / p).resolve()
    else:
        cand = project_root() / "params" / f"{profile}.yaml"
    if not cand.exists():
        known = sorted(x.stem for x in (project_root() / "params").glob("*.yaml"))
        raise ConfigError(f"Profile '{profile}' not found (looked for {cand}). Known profiles: {known}")
    return cand


def _read_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of parameter names to values")
    return data


def load_profile(profile: str | Path) -> dict[str, Any]:
    """Load a profile: params/default.yaml overridden by the named profile, validated."""
    base_path = project_root() / "params" / "default.yaml"
    base = _read_yaml(base_path)
    missing = [n for n in PARAM_NAMES if n not in base]
    if missing:
        raise ConfigError(f"{base_path} must name every parameter; missing: {missing}")
    path = profile_path(profile)
    values = dict(base)
    if path.resolve() != base_path.resolve():
        values.update(_read_yaml(path))
    out = validate_mapping(values)
    if not set(out["oc_control_alphas"]) <= set(out["alphas"]):
        raise ConfigError(f"{path.name}: oc_control_alphas {out['oc_control_alphas']} must be values of alphas "
                          f"{out['alphas']} (a profile that changes alphas must set oc_control_alphas too)")
    return out


@dataclass(frozen=True)
class Config:
    """Validated parameters of one notebook. Reading a parameter it did not declare fails."""

    values: Mapping[str, Any]
    declared: frozenset[str] = field(default_factory=frozenset)

    def __getattr__(self, name: str) -> Any:
        values = object.__getattribute__(self, "values")
        if name in values:
            return values[name]
        if name in _BY_NAME:
            raise AttributeError(f"Parameter '{name}' is not declared in this notebook's parameters cell")
        raise AttributeError(name)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.values)

    def table(self) -> "Any":
        """The parameters as a DataFrame with their docs and the paper's value."""
        import pandas as pd

        rows = [{"parameter": k, "value": v, "paper": _BY_NAME[k].paper, "meaning": _BY_NAME[k].doc}
                for k, v in self.values.items()]
        return pd.DataFrame(rows).set_index("parameter")


_NOTEBOOK_BUILTINS = {"In", "Out", "exit", "quit", "get_ipython"}
_LITERAL_TYPES = (str, int, float, bool, list, tuple, dict, type(None))


def literal_assignments(source: str) -> list[str] | None:
    """Names assigned in ``source`` if it consists only of ``name = <literal>`` lines, else None."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    names = []
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            return None
        try:
            ast.literal_eval(node.value)
        except ValueError:
            return None
        names.append(node.targets[0].id)
    return names or None


PARAMS_MARKER = "# Parameters"


def _is_params_cell(src: str) -> bool:
    """A parameters cell: the tagged one or papermill's injected copy, both opening with ``# Parameters``."""
    first = next((ln.strip() for ln in src.splitlines() if ln.strip()), "")
    return first.startswith(PARAMS_MARKER)


def from_notebook(namespace: Mapping[str, Any]) -> Config:
    """Validate the parameters a notebook declared (and papermill injected) in ``namespace``.

    In IPython the parameters are read from the input history, from the cells that open with
    ``# Parameters``: the notebook's tagged ``parameters`` cell and papermill's injected cell (later
    cells win). Any other cell is ignored, so a reader's scratch cell (``layer = 5``) neither fails
    validation nor changes a parameter. Values are the cells' literals, not whatever a later cell
    rebound. Elsewhere (a plain dict), every public plain value in ``namespace``. Every name must be a
    known parameter: a misspelt parameter injected by papermill (which papermill only warns about) fails.
    """
    history = namespace.get("In")
    if isinstance(history, list) and history:
        values: dict[str, Any] = {}
        for src in history:
            if not _is_params_cell(src or ""):
                continue
            names = literal_assignments(src)
            if names is None:
                raise ConfigError("A '# Parameters' cell may hold only `name = <literal>` lines:\n" + src)
            for node in ast.parse(src).body:
                values[node.targets[0].id] = ast.literal_eval(node.value)
    else:
        values = {k: v for k, v in namespace.items()
                  if not k.startswith("_") and k not in _NOTEBOOK_BUILTINS and isinstance(v, _LITERAL_TYPES)}
    if not values:
        raise ConfigError("No parameters found: run the 'parameters' cell (the one opening with '# Parameters') first")
    checked = validate_mapping(values)
    return Config(values=checked, declared=frozenset(checked))
