"""Instruction tuning: make a chat model from a base model, offline.

No base/instruct pair of one family can be had offline (measured on this machine; see the README's Models section), so notebook 06 makes its own: supervised
fine-tuning of a base model (default ``gemma-3-270m``) in the chat format, on

- short-answer QA pairs (TriviaQA's open-domain *test* split, packaged under ``data/``; its alias lists are
  unordered, so the answer is a canonical alias chosen by :func:`canonical_answer`), with the paper's
  answer-only instruction, and
- simple instructions generated here (arithmetic, spelling, counting, ordering), answered exactly,

all disjoint from every question a notebook evaluates on (:func:`evaluated_questions`, checked by
normalised text). Only the response tokens carry the loss. Training runs in bfloat16 autocast (where the
machine computes bfloat16 natively; in float32 elsewhere: :func:`autocast_dtype`) over float32 master weights, and the tuned model is saved in float32, so the weight drift notebook 06 measures
is the training's and not bfloat16 rounding. The run is cached by its configuration and resumes from its
last checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from hneuron_utils.training.eaft import token_objective

# Gemma's chat format (the tuned model's template; the base GGUF ships none). Its turn tokens
# <start_of_turn>/<end_of_turn> are already in the base vocabulary.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
    "<start_of_turn>{{ role }}\n{{ m['content'] | trim }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
FREEZABLE = ("embeddings", "norms", "attention")

Pair = tuple[str, str]  # (user message, assistant answer)


@dataclass(frozen=True)
class TuneConfig:
    """Everything that changes the tuned weights (the cache key of a tuning run)."""

    base_model: str
    steps: int
    batch_size: int
    lr: float
    warmup_steps: int
    max_tokens: int
    freeze: tuple[str, ...]
    seed: int
    data_digest: str
    loss: str = "sft"               # "sft" (plain cross-entropy) or "eaft" (entropy-gated, notebook 08)
    eaft_alpha: float = 1.0
    eaft_topk: int = 20
    train_layers: tuple[int, ...] = ()  # non-empty: train only these layers' MLPs (freeze is then ignored)
    autocast: str = "bfloat16"      # the forward's autocast dtype; "float32" = none (see :func:`autocast_dtype`)
    stop_after: int = 0             # > 0: stop after this many steps of the ``steps``-step schedule (0 = all)


def autocast_dtype() -> str:
    """The tuning's autocast: bfloat16 where this machine computes it natively (a CPU with AVX512-BF16 or AMX,
    a GPU), else float32 — a CPU without native bfloat16 emulates it some twenty times slower than float32."""
    import torch

    from hneuron_utils.models import resolve_dtype

    return "bfloat16" if resolve_dtype("auto") == torch.bfloat16 else "float32"


def evaluated_questions() -> set[str]:
    """Normalised text of every question a notebook evaluates on: all of TriviaQA's train split (01, 03,
    05), NQ-Open test and both biomedical stand-in files (04, 06), and the over-compliance items (05)."""
    from hneuron_utils.data import load_dataset, overcompliance as oc
    from hneuron_utils.judges import normalize

    qs = [r.question for name in ("triviaqa", "nq_open", "biomed_standin", "biomed_vignettes")
          for r in load_dataset(name)]
    qs += [it.question for it in oc.load_falseqa()] + [it.question for it in oc.load_counterfactual()]
    qs += [it.question for it in oc.load_jailbreak()]
    return {normalize(q) for q in qs}


def canonical_answer(aliases: Sequence[str]) -> str | None:
    """The alias to train on, from an unordered alias list (TriviaQA's DPR file mixes the answer with
    redirects such as "Scorpio (disambiguation)" or "Utah (State)"): among aliases without brackets or
    colons and of at most 5 words, the one contained (normalised) in the most other aliases; ties go to
    the one with a capital letter, then the shorter. None if no alias qualifies."""
    from hneuron_utils.judges import normalize

    norm = [normalize(a) for a in aliases]
    best, best_key = None, None
    for a, na in zip(aliases, norm):
        a = a.strip()
        if not na or any(c in a for c in "():[]") or len(a.split()) > 5:
            continue
        key = (sum(f" {na} " in f" {o} " for o in norm if o != na), a[:1].isupper(), -len(a))
        if best_key is None or key > best_key:
            best, best_key = a, key
    return best


def qa_pairs(n: int, seed: int, exclude: set[str]) -> tuple[list[Pair], dict[str, int]]:
    """``n`` seeded QA pairs (question + the paper's answer-only instruction → :func:`canonical_answer`)
    from the packaged TriviaQA test split, skipping any question in ``exclude`` (normalised) and any
    question without a usable alias."""
    from hneuron_utils.data import load_dataset
    from hneuron_utils.text.generation import PAPER_SUFFIX
    from hneuron_utils.judges import normalize

    recs = load_dataset("triviaqa_test")
    fresh = [r for r in recs if normalize(r.question) not in exclude]
    kept = [(r, a) for r in fresh if (a := canonical_answer(r.answers))]
    if n > len(kept):
        raise ValueError(f"asked for {n} QA pairs, only {len(kept)} are available")
    pick = random.Random(seed).sample(kept, n)
    pairs = [(r.question.strip() + PAPER_SUFFIX, a) for r, a in pick]
    return pairs, {"QA candidates (TriviaQA test split)": len(recs),
                   "dropped: question evaluated elsewhere": len(recs) - len(fresh),
                   "dropped: no usable alias": len(fresh) - len(kept), "QA pairs": n}


_WORDS = ("apple", "river", "garden", "violet", "planet", "candle", "mirror", "silver", "forest", "button",
          "pencil", "window", "ladder", "orange", "rocket", "marble", "tunnel", "kitten", "saddle", "meadow")


def instructions(n: int, seed: int) -> list[Pair]:
    """``n`` generated instructions with exact answers: arithmetic, reversing and upper-casing words,
    counting letters or words, first letters, sorting and maxima of numbers."""
    rng = random.Random(seed)

    def one() -> Pair:
        kind = rng.randrange(8)
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        w = rng.choice(_WORDS)
        ws = rng.sample(_WORDS, rng.randint(3, 5))
        nums = rng.sample(range(1, 100), rng.randint(3, 6))
        if kind == 0:
            return f"What is {a} plus {b}? Reply with the number only.", str(a + b)
        if kind == 1:
            return f"What is {a} times {b}? Reply with the number only.", str(a * b)
        if kind == 2:
            return f"Write the word '{w}' backwards.", w[::-1]
        if kind == 3:
            return f"Write '{w}' in capital letters.", w.upper()
        if kind == 4:
            c = rng.choice(w)
            return f"How many times does the letter '{c}' appear in '{w}'? Answer with a number.", str(w.count(c))
        if kind == 5:
            return f"How many words are in this list: {', '.join(ws)}? Answer with a number.", str(len(ws))
        if kind == 6:
            return f"Sort these numbers from smallest to largest: {', '.join(map(str, nums))}.", \
                ", ".join(map(str, sorted(nums)))
        return f"Which is the largest of {', '.join(map(str, nums))}?", str(max(nums))

    return [one() for _ in range(n)]


def build_pairs(n_qa: int, n_instructions: int, seed: int) -> tuple[list[Pair], dict[str, int]]:
    """The tuning set: QA pairs + instructions, shuffled (seeded), with a count of what was dropped."""
    pairs, info = qa_pairs(n_qa, seed, evaluated_questions())
    pairs += instructions(n_instructions, seed + 1)
    random.Random(seed + 2).shuffle(pairs)
    return pairs, {**info, "instructions": n_instructions, "total": len(pairs)}


def digest_pairs(pairs: Sequence[Pair]) -> str:
    """A short digest of the tuning set (part of the tuning run's cache key)."""
    from hneuron_utils.cache import digest

    return digest([list(p) for p in pairs], 16)


def ensure_chat_template(tokenizer: Any) -> str:
    """Give a template-less (base) tokenizer Gemma's chat template; return which template is used."""
    if getattr(tokenizer, "chat_template", None):
        return "the tokenizer's own"
    vocab = tokenizer.get_vocab()
    if not {"<start_of_turn>", "<end_of_turn>"} <= set(vocab):
        raise ValueError("this base tokenizer has no chat template and no Gemma turn tokens: give the tuned "
                         "model yourself (parameter tuned_model) or add a chat template to the tokenizer")
    tokenizer.chat_template = GEMMA_CHAT_TEMPLATE
    return "Gemma's (set here)"


def encode_pair(tokenizer: Any, pair: Pair, max_tokens: int) -> tuple[list[int], list[int]]:
    """(input ids, labels) of one chat-formatted pair; labels are -100 except on the response tokens
    (and the end-of-turn token that closes it)."""
    user, answer = pair
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                           add_generation_prompt=True)
    full = tokenizer.apply_chat_template([{"role": "user", "content": user}, {"role": "assistant", "content": answer}],
                                         tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("the chat template renders the prompt differently inside a full conversation")
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    if ids[:len(p)] != p:
        raise ValueError("the prompt's tokens change inside the full conversation (a merge across the turn "
                         "boundary): the response labels would be shifted")
    ids = ids[:max_tokens]
    labels = [-100] * min(len(p), len(ids)) + ids[len(p):]
    return ids, labels


def frozen_parameters(model: torch.nn.Module, freeze: Sequence[str]) -> list[str]:
    """Freeze parameter groups (``embeddings``: the input/output embedding matrix; ``norms``; ``attention``)
    and return the names of the frozen parameters."""
    unknown = set(freeze) - set(FREEZABLE)
    if unknown:
        raise ValueError(f"cannot freeze {sorted(unknown)}; choose from {FREEZABLE}")
    emb = {id(model.get_input_embeddings().weight)}
    if model.get_output_embeddings() is not None:
        emb.add(id(model.get_output_embeddings().weight))
    out = []
    for name, p in model.named_parameters():
        hit = (("embeddings" in freeze and id(p) in emb) or ("norms" in freeze and "norm" in name)
               or ("attention" in freeze and "self_attn" in name))
        if hit:
            p.requires_grad_(False)
            out.append(name)
        else:
            p.requires_grad_(True)
    return out


def train_mlp_only(model: torch.nn.Module, layers_path: str, layers: Sequence[int]) -> list[str]:
    """Make only the MLP weights of ``layers`` trainable; return the names of the frozen parameters."""
    n = len(functools.reduce(getattr, layers_path.split("."), model))
    bad = [i for i in layers if not 0 <= i < n]
    if bad:
        raise ValueError(f"train_layers {bad} out of range: the model has {n} layers")
    keep = tuple(f"{layers_path}.{i}.mlp." for i in layers)
    out = []
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(keep))
        if not p.requires_grad:
            out.append(name)
    return out


def _lr_at(step: int, cfg: TuneConfig) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def _batch(encoded: list[tuple[list[int], list[int]]], pad: int) -> dict[str, torch.Tensor]:
    n = max(len(i) for i, _ in encoded)
    ids = torch.full((len(encoded), n), pad, dtype=torch.long)
    lab = torch.full((len(encoded), n), -100, dtype=torch.long)
    am = torch.zeros((len(encoded), n), dtype=torch.long)
    for r, (i, l) in enumerate(encoded):  # right padding
        ids[r, :len(i)], lab[r, :len(l)], am[r, :len(i)] = torch.tensor(i), torch.tensor(l), 1
    return {"input_ids": ids, "labels": lab, "attention_mask": am}


def response_loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled (response) positions. The output head runs only at
    those positions (a few per conversation) instead of at all of them: with Gemma's 262k-token vocabulary
    the full logits would cost more than the rest of the model. Equal to ``model(**batch).loss`` (tested)."""
    logits, target = response_logits(model, batch)
    return torch.nn.functional.cross_entropy(logits, target)


def response_logits(model: Any, batch: dict[str, torch.Tensor], *, forward: Any = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(float logits [N, V], target ids [N]) at the N labelled (response) positions of ``batch``.
    ``forward(inner, **inputs)`` replaces the decoder stack's own call (e.g. a
    :class:`~hneuron_utils.models.lower_layers.ResidualStore` on ``model.model``)."""
    inner, head = getattr(model, "model", None), model.get_output_embeddings()
    if inner is None or head is None:
        raise ValueError("response_logits needs a model with .model and an output embedding")
    hidden = (forward or (lambda m, **kw: m(**kw)))(inner, input_ids=batch["input_ids"],
                                                    attention_mask=batch["attention_mask"],
                                                    use_cache=False).last_hidden_state
    target = batch["labels"][:, 1:]
    keep = target != -100
    logits = head(hidden[:, :-1][keep]).float()
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits, target[keep]


def tune(cfg: TuneConfig, pairs: Sequence[Pair], out_dir: Path, checkpoint_every: int = 50,
         progress: bool = True, *, evaluate: Any = None, eval_every: int = 0, save_weights: bool = True
         ) -> dict[str, Any]:
    """Fine-tune ``cfg.base_model`` on ``pairs`` and save it (float32 safetensors, tokenizer with its chat
    template, ``tune_config.json``, ``losses.csv``) in ``out_dir``. Resumes from ``out_dir/checkpoint.pt``;
    returns the training record. A finished ``out_dir`` is returned as it is.

    With ``evaluate`` (a callable ``(model, tokenizer) -> dict of numbers``, e.g. a validation score) and
    ``eval_every`` > 0, the model is evaluated before the first step and every ``eval_every`` steps (in eval
    mode, without gradients, under the training's autocast); the rows go to ``evals.csv``. A finished run
    without that file raises instead of returning a curve it never measured.

    ``save_weights=False`` keeps only the record, the losses and the evaluations (a run tuned only for its
    validation curve: the 1.5B model's weights take 6.7 GB); asking such a folder for weights later raises."""
    if evaluate is not None and eval_every < 1:
        raise ValueError(f"eval_every must be >= 1 with an evaluate function, got {eval_every}")
    from hneuron_utils.progress import bar as progress_bar

    from hneuron_utils.models.loading import _load_hf

    out_dir = Path(out_dir)
    done = out_dir / "tune_record.json"
    eval_key = evaluate.key() if hasattr(evaluate, "key") else None
    if done.exists():
        if evaluate is not None and not (out_dir / "evals.csv").exists():
            raise RuntimeError(f"{out_dir} was tuned without evaluations: delete the folder to tune it again with them")
        if save_weights and not json.loads(done.read_text()).get("weights saved", True):
            raise RuntimeError(f"{out_dir} was tuned for its evaluations only, without saving the weights: delete "
                               "the folder to tune it again with them")
        if eval_key is not None:
            stored = out_dir / "evals_key.json"
            was = json.loads(stored.read_text()) if stored.exists() else "an earlier scorer (no evals_key.json)"
            if was != eval_key:
                raise RuntimeError(f"{out_dir} was evaluated by {was}, not by {eval_key}: delete the folder to tune "
                                   "and evaluate it again")
        return json.loads(done.read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    model, tok, _, _ = _load_hf(cfg.base_model, torch.float32, torch.device("cpu"))
    template = ensure_chat_template(tok)
    model.train()
    if cfg.train_layers:
        from hneuron_utils.models import find_layers_path

        frozen = train_mlp_only(model, find_layers_path(model), cfg.train_layers)
    else:
        frozen = frozen_parameters(model, cfg.freeze)
    trainable = [p for p in model.parameters() if p.requires_grad]
    reuse = _residual_store(model, cfg)
    opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=0.0)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    encoded = [e for e in (encode_pair(tok, p, cfg.max_tokens) for p in pairs) if any(x != -100 for x in e[1])]
    if not encoded:
        raise ValueError(f"no tuning pair has a response token within sft_max_tokens = {cfg.max_tokens}")
    rng = np.random.default_rng(cfg.seed)  # one permutation per pass: every pair seen once before any twice
    order = np.concatenate([rng.permutation(len(encoded))
                            for _ in range(-(-cfg.steps * cfg.batch_size // len(encoded)))])
    ckpt = out_dir / "checkpoint.pt"
    losses: list[dict] = []
    evals: list[dict] = []
    start = 0
    end = cfg.stop_after or cfg.steps
    if not 0 < end <= cfg.steps:
        raise ValueError(f"stop_after must lie in [0, steps = {cfg.steps}], got {cfg.stop_after}")

    def run_eval(step: int) -> None:
        model.eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.autocast == "bfloat16"):
            evals.append({"step": step, **evaluate(model, tok)})
        model.train()

    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        got = model.load_state_dict(state["model"], strict=False)
        if got.unexpected_keys or set(state["model"]) != {n for n, p in model.named_parameters() if p.requires_grad}:
            raise RuntimeError(f"{ckpt} does not match this model's trainable parameters: delete it and re-run")
        opt.load_state_dict(state["opt"])
        start, losses, evals = state["step"], state["losses"], state.get("evals", [])
    t0 = time.perf_counter() - (losses[-1]["seconds"] if losses else 0.0)
    if evaluate is not None and start == 0:
        run_eval(0)
    bar = progress_bar(range(start, end), show=progress, desc="tuning", mininterval=10.0)
    for step in bar:
        batch = _batch([encoded[i] for i in order[step * cfg.batch_size:(step + 1) * cfg.batch_size]], pad)
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, cfg)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.autocast == "bfloat16"):
            logits, target = response_logits(model, batch, forward=reuse)
            loss, ce, w = token_objective(logits, target, cfg.loss, cfg.eaft_alpha, cfg.eaft_topk)
            if step == start == 0:  # the head-at-labels loss must be the model's own loss
                with torch.no_grad():
                    ref = float(model(**batch).loss)
                if not math.isclose(float(ce.mean()), ref, rel_tol=2e-2):
                    raise RuntimeError(f"response_loss {float(ce.mean()):.4f} differs from the model's loss {ref:.4f} "
                                       "(an architecture that scales its logits?)")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        losses.append({"step": step + 1, "loss": float(loss.detach()), "cross_entropy": float(ce.mean()),
                       "mean_weight": float(w.mean()), "lr": _lr_at(step, cfg),
                       "tokens": int((batch["labels"] != -100).sum()), "seconds": time.perf_counter() - t0})
        bar.set_postfix(loss=f"{float(loss.detach()):.3f}", refresh=False)
        if evaluate is not None and ((step + 1) % eval_every == 0 or step + 1 == end):
            run_eval(step + 1)
        if checkpoint_every and (step + 1) % checkpoint_every == 0 and step + 1 < end:
            tmp = ckpt.with_suffix(f".tmp{os.getpid()}")
            torch.save({"model": {n: p.detach() for n, p in model.named_parameters() if p.requires_grad},
                        "opt": opt.state_dict(), "step": step + 1, "losses": losses, "evals": evals}, tmp)
            os.replace(tmp, ckpt)
    bar.close()
    model.eval()
    if not progress:  # transformers' own "Writing model shards" bar
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    if save_weights:
        model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    import pandas as pd

    pd.DataFrame(losses).to_csv(out_dir / "losses.csv", index=False)
    if evaluate is not None:
        pd.DataFrame(evals).to_csv(out_dir / "evals.csv", index=False)
        if eval_key is not None:
            (out_dir / "evals_key.json").write_text(json.dumps(eval_key, indent=1))
    n_train = sum(p.numel() for p in trainable)
    record = {"config": asdict(cfg), "chat template": template, "frozen parameters": frozen,
              "trainable parameters": n_train, "total parameters": sum(p.numel() for p in model.parameters()),
              "pairs": len(pairs), "steps run": end, "weights saved": save_weights,
              "pairs dropped (response beyond max_tokens)": len(pairs) - len(encoded), "seconds": round(losses[-1]["seconds"], 1) if losses else 0.0,
              "first loss": losses[0]["loss"] if losses else None, "last loss": losses[-1]["loss"] if losses else None}
    (out_dir / "tune_config.json").write_text(json.dumps(asdict(cfg), indent=1))
    done.write_text(json.dumps(record, indent=1))
    ckpt.unlink(missing_ok=True)
    return json.loads(done.read_text())  # the same record a cached re-run returns


_RESIDUALS: dict[int, Any] = {}  # one store per first trained layer, shared by the tunings of one process


def _residual_store(model: torch.nn.Module, cfg: TuneConfig) -> Any:
    """With ``cfg.train_layers`` (only those layers' MLPs train) the residual entering the lowest trained layer
    depends only on the batch: a store computes it once per batch and every tuning of this process on the same
    batches (the learning-rate grid, the other loss) reuses it — the same numbers, less work. None otherwise."""
    if not cfg.train_layers:
        return None
    from hneuron_utils.models import lower_layers

    k = min(cfg.train_layers)
    if k == 0 or not lower_layers.frozen_below(model.model, k):
        return None
    return _RESIDUALS.setdefault(k, lower_layers.ResidualStore(k, max_bytes=3 << 30))


def tuned_dir(cfg: TuneConfig) -> Path:
    """Where the tuned model of ``cfg`` lives (a stage folder keyed by the whole config)."""
    from hneuron_utils.cache import stage_dir

    key = asdict(cfg)
    later = [f for f in dataclasses.fields(TuneConfig) if f.name in _LATER_FIELDS]
    plain = cfg.loss == "sft" and not cfg.train_layers  # a run 06 could have made before these fields existed
    for f in later:  # fields added for notebook 08 enter the key only when set (06's runs keep their keys)
        if key[f.name] == f.default or (f.name.startswith("eaft_") and cfg.loss == "sft"):
            del key[f.name]
    # version 2: one permutation per pass (version 1's order repeated some pairs within the first pass when
    # the steps covered the set more than once; with at most one pass, as in 06, the two orders are identical)
    return stage_dir("sft", {"stage": "sft", "version": 1 if plain else 2, **key})


_LATER_FIELDS = ("loss", "eaft_alpha", "eaft_topk", "train_layers", "autocast", "stop_after")
