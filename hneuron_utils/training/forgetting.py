"""Forgetting under fine-tuning: plain fine-tuning (SFT) versus entropy-adaptive fine-tuning (EAFT) of the
default model on a new domain (medical multiple choice), and what each does to the model's general
knowledge, to the H-neurons and to their detector.

Every comparison is paired (the same items before and after, or under both losses) and carries a
percentile-bootstrap 95% interval; the words that read it come from the interval (:func:`change_words`).
"""

from __future__ import annotations

import gc
import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from hneuron_utils.stats import paired_auroc

Pair = tuple[str, str]


# --------------------------------------------------------------------------- the domain


def mc_split(items: Sequence[Any], n_train: int, n_eval: int, seed: int) -> tuple[list[Any], list[Any]]:
    """Disjoint seeded (tuning items, held-out items) of the medical multiple-choice set."""
    if n_train + n_eval > len(items):
        raise ValueError(f"asked for {n_train} tuning + {n_eval} held-out items, the set has {len(items)}")
    order = np.random.default_rng(seed).permutation(len(items))
    return [items[i] for i in order[:n_train]], [items[i] for i in order[n_train:n_train + n_eval]]


def mc_pairs(items: Sequence[Any], *, target_format: str) -> list[Pair]:
    """(user message, target answer) tuning pairs: the question with its lettered options → the target in
    ``target_format`` (:data:`~hneuron_utils.data.medmc.TARGET_FORMATS`)."""
    from hneuron_utils.data.medmc import mc_prompt, mc_target

    return [(mc_prompt(it), mc_target(it, target_format)) for it in items]


def letter_reading(tokenizer: Any, prefix: str = "", n: int = 5) -> tuple[str, list[int]]:
    """Where and how an option letter is read after ``prefix``: (the text to append to the prompt, the token
    ids of "A", "B", ... as the next token). After "Answer:" the letter is " C" with its space when the
    tokenizer joins them (Qwen, Llama); otherwise the space goes into the appended text. Each letter must be
    one token there."""
    candidates = [prefix, prefix + " "] if prefix else [""]
    for cand in candidates:
        head = tokenizer(cand, add_special_tokens=False)["input_ids"] if cand else []
        out = []
        for letter in "ABCDE"[:n]:
            ids = tokenizer(f"{prefix} {letter}" if prefix else letter, add_special_tokens=False)["input_ids"]
            if ids[:len(head)] != head or len(ids) != len(head) + 1:
                break
            out.append(ids[-1])
        if len(out) == n:
            return cand, out
    raise ValueError(f"the option letters after {prefix!r} are not one token each for this tokenizer: "
                     "cannot score by letter")


def letter_ids(tokenizer: Any, n: int = 5) -> list[int]:
    """Token ids of the option letters "A", "B", ... as a response's first token (each must be one token)."""
    return letter_reading(tokenizer, "", n)[1]


def left_padded(tokenizer: Any, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
    """A left-padded batch of ``prompts`` (no special tokens added): ``input_ids``, ``attention_mask`` and
    ``position_ids`` counted from each row's first token."""
    tok = tokenizer
    enc = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    n = max(len(e) for e in enc)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = torch.full((len(enc), n), pad, dtype=torch.long)
    am = torch.zeros((len(enc), n), dtype=torch.long)
    for r, e in enumerate(enc):
        ids[r, n - len(e):], am[r, n - len(e):] = torch.tensor(e), 1
    return {"input_ids": ids, "attention_mask": am, "position_ids": (am.cumsum(-1) - 1).clamp(min=0)}


@torch.inference_mode()
def letter_probs(model: Any, tokenizer: Any, prompts: Sequence[str], letters: list[int], *,
                 forward: Any = None) -> np.ndarray:
    """Softmax probabilities [B, len(letters)] of the option letters as the next token after each prompt
    (a :func:`left_padded` batch). ``forward(model, **batch)`` replaces ``model(**batch)`` (e.g. a
    :class:`~hneuron_utils.models.lower_layers.ResidualStore`)."""
    dev = next(model.parameters()).device
    batch = {k: v.to(dev) for k, v in left_padded(tokenizer, prompts).items()}
    out = (forward or (lambda m, **kw: m(**kw)))(model, **batch, logits_to_keep=1)
    return torch.softmax(out.logits[:, -1].float(), -1)[:, letters].cpu().numpy()


def mc_prompts(tokenizer: Any, items: Sequence[Any], *, target_format: str) -> list[str]:
    """Each item as the chat prompt, with the format's :func:`~hneuron_utils.data.medmc.score_prefix`
    prefilled in the assistant turn: the place where every model's letter is read."""
    from hneuron_utils.data.medmc import mc_prompt, score_prefix
    from hneuron_utils.text.generation import chat_prompt

    suffix, _ = letter_reading(tokenizer, score_prefix(target_format))
    return [chat_prompt(tokenizer, mc_prompt(it)) + suffix for it in items]


def letter_choices(model: Any, tokenizer: Any, prompts: Sequence[str], n_options: Sequence[int], *,
                   letters: list[int], batch_size: int, forward: Any = None) -> list[dict]:
    """Per prompt, in batches of ``batch_size`` in the given order: the option letter with the highest
    probability among its ``n_options`` letters ("choice", 0-based) and the probability mass on those letters
    ("letter_mass")."""
    out = []
    for b in range(0, len(prompts), batch_size):
        probs = letter_probs(model, tokenizer, prompts[b:b + batch_size], letters, forward=forward)
        for p, k in zip(probs, n_options[b:b + batch_size]):
            out.append({"choice": int(np.argmax(p[:k])), "letter_mass": float(p[:k].sum())})
    return out


def mc_scores(loaded: Any, items: Sequence[Any], *, target_format: str, batch_size: int, progress: bool = True,
              forward: Any = None) -> pd.DataFrame:
    """The model's choice on each multiple-choice item: the option letter with the highest probability as
    the next token of :func:`mc_prompts` (after "Answer:" in the "answer_letter" format, as the first answer
    token in "letter_text"), its correctness, and the probability mass on the letters (how much the model
    answers in the letter format). Cached per model, format and item. ``forward`` replaces the model's own
    call (a :class:`~hneuron_utils.models.lower_layers.ResidualStore` shared by models that differ only in
    their upper layers)."""
    from hneuron_utils.progress import bar

    from hneuron_utils.models import model_key
    from hneuron_utils.data.medmc import MC_INSTRUCTION, score_prefix
    from hneuron_utils.cache import cached_map, digest

    by_id = {it.id: it for it in items}
    prefix = score_prefix(target_format)
    _, letters = letter_reading(loaded.tokenizer, prefix)
    prompts = dict(zip(by_id, mc_prompts(loaded.tokenizer, items, target_format=target_format)))
    content = [(it.id, it.question, list(it.options)) for it in items]  # what the prompts are made of
    key = {"stage": "mc_letters", "version": 1, "model": model_key(loaded), "instruction": MC_INSTRUCTION,
           "items": digest(content, 16), **({"prefix": prefix} if prefix else {})}

    def compute(ids: list[str]) -> dict[str, dict]:
        order = sorted(ids, key=lambda i: len(prompts[i]))
        read = letter_choices(loaded.hf, loaded.tokenizer, [prompts[i] for i in order],
                              [len(by_id[i].options) for i in order], letters=letters, batch_size=batch_size,
                              forward=forward)
        return dict(zip(order, read))

    got = cached_map("mc_letters", key, list(by_id), compute, chunk=4 * batch_size,
                     progress=(lambda c: bar(c, desc="multiple choice", mininterval=10)) if progress else None)
    return pd.DataFrame([{"id": i, "choice": got[i]["choice"], "correct": got[i]["choice"] == by_id[i].correct,
                          "letter_mass": got[i]["letter_mass"]} for i in by_id])


# --------------------------------------------------------------------------- choosing lr and steps on validation


class ValidationScorer:
    """Held-out-free model selection: the number of ``items`` (a validation split of the *tuning* items) that a
    model in training answers right, read like :func:`mc_scores` (argmax over the option letters after the
    format's prefix; prompts batched in order of length, as there). Called by
    :func:`hneuron_utils.training.sft.tune` every ``eval_every`` steps.

    With ``reuse_below = k`` (the lowest trained layer, when only layers ``k`` and above train) the residual
    entering layer ``k`` is computed once per batch and reused by every later evaluation
    (:class:`~hneuron_utils.models.lower_layers.ResidualStore`: the same numbers, about ``k / n_layers`` of
    the work saved)."""

    version = 2  # 1: prompts batched in item order, every layer computed at every evaluation

    def __init__(self, items: Sequence[Any], *, target_format: str, batch_size: int, reuse_below: int | None = None):
        from hneuron_utils.data.medmc import score_prefix
        from hneuron_utils.models.lower_layers import ResidualStore

        if not items:
            raise ValueError("the validation split is empty: raise ft_val_items")
        self.items, self.target_format, self.batch_size = list(items), target_format, batch_size
        self.prefix = score_prefix(target_format)
        self.store = ResidualStore(reuse_below) if reuse_below else None

    def key(self) -> dict[str, Any]:
        """What the scores depend on besides the model: written beside a tuning's evaluations."""
        from hneuron_utils.cache import digest

        return {"scorer": type(self).__name__, "version": self.version, "format": self.target_format,
                "batch_size": self.batch_size, "items": digest([(it.id, it.correct) for it in self.items], 16)}

    def __call__(self, model: Any, tokenizer: Any) -> dict[str, float]:
        prompts = mc_prompts(tokenizer, self.items, target_format=self.target_format)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # as mc_scores: less padding
        _, letters = letter_reading(tokenizer, self.prefix)
        read = letter_choices(model, tokenizer, [prompts[i] for i in order],
                              [len(self.items[i].options) for i in order], letters=letters,
                              batch_size=self.batch_size, forward=self.store)
        right = sum(r["choice"] == self.items[i].correct for r, i in zip(read, order))
        return {"validation correct": int(right), "validation items": len(prompts)}


def selection_table(evals: Mapping[float, pd.DataFrame]) -> pd.DataFrame:
    """One row per (learning rate, step) of the validation curves (``evals``: lr → the tuning's
    ``evals.csv``), with the validation accuracy and its Wilson 95% interval. Step 0 = the untuned model."""
    from hneuron_utils.stats import wilson_interval

    rows = []
    for lr, e in evals.items():
        for _, r in e.iterrows():
            k, n = int(r["validation correct"]), int(r["validation items"])
            lo, hi = wilson_interval(k, n)
            rows.append({"lr": float(lr), "step": int(r["step"]), "validation correct": k, "validation items": n,
                         "accuracy": k / n, "lo": lo, "hi": hi})
    return pd.DataFrame(rows)


def choose_setting(table: pd.DataFrame) -> dict[str, float]:
    """The (learning rate, step) with the most validation items right, after step 0; ties go to fewer steps,
    then the smaller learning rate (the gentler tuning). Returns lr, step, its accuracy, and the untuned
    model's validation accuracy."""
    tuned = table[table.step > 0]
    if tuned.empty:
        raise ValueError("no validation evaluation after step 0: set ft_eval_every to at most ft_steps")
    best = tuned.sort_values(["validation correct", "step", "lr"], ascending=[False, True, True]).iloc[0]
    untuned = table[table.step == 0]
    return {"lr": float(best.lr), "step": int(best.step), "accuracy": float(best.accuracy),
            "untuned accuracy": float(untuned.accuracy.iloc[0]) if len(untuned) else float("nan")}


def letter_check(loaded: Any, items: Sequence[Any], scores: pd.DataFrame, *, target_format: str, max_new_tokens: int,
                 batch_size: int) -> pd.DataFrame:
    """Does the letter read by :func:`mc_scores` say what the model answers? Greedy answers to ``items`` from
    the same prompts (the format's prefix prefilled), read by the text judge
    (:func:`~hneuron_utils.data.medmc.mc_choice`), next to the letter choice."""
    from hneuron_utils.data.medmc import mc_choice
    from hneuron_utils.text.generation import Sampling, sample_many

    prompts = mc_prompts(loaded.tokenizer, items, target_format=target_format)
    outs = sample_many(loaded, prompts, 1, Sampling(max_new_tokens=max_new_tokens), keys=[it.id for it in items],
                       batch_size=batch_size, progress=False)
    by_id = scores.set_index("id").choice
    rows = []
    for it, o in zip(items, outs):
        said = mc_choice(o[0].text, it)
        rows.append({"id": it.id, "letter choice": int(by_id[it.id]), "answer": o[0].text, "answer's choice": said,
                     "agree": said == int(by_id[it.id]) if said is not None else None})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- confident conflicts


def token_table(loaded: Any, pairs: Sequence[Pair], max_tokens: int, batch_size: int, k: int) -> pd.DataFrame:
    """One row per response token of the tuning pairs, under ``loaded`` (before tuning): the pair, the
    target's probability, the top-k entropy H_k (nats), H_k / ln k and the cross-entropy. Cached on disk by
    the model, the pairs, ``max_tokens`` and ``k``."""
    from hneuron_utils.models import model_key
    from hneuron_utils.training.sft import digest_pairs
    from hneuron_utils.cache import stage_dir

    key = {"stage": "conflict_tokens", "version": 1, "model": model_key(loaded), "pairs": digest_pairs(pairs),
           "max_tokens": max_tokens, "k": k}
    f = stage_dir("conflict_tokens", key) / "tokens.csv"
    if f.exists():
        return pd.read_csv(f)
    out = _token_table(loaded, pairs, max_tokens, batch_size, k)
    tmp = f.with_suffix(".tmp")
    out.to_csv(tmp, index=False)
    tmp.replace(f)
    return out


@torch.inference_mode()
def _token_table(loaded: Any, pairs: Sequence[Pair], max_tokens: int, batch_size: int, k: int) -> pd.DataFrame:
    """:func:`token_table` without the cache."""
    from hneuron_utils.training.eaft import topk_entropy
    from hneuron_utils.training.sft import _batch, encode_pair, response_logits

    tok, model = loaded.tokenizer, loaded.hf
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    enc = [encode_pair(tok, p, max_tokens) for p in pairs]
    dev = next(model.parameters()).device
    rows = []
    for b in range(0, len(enc), batch_size):
        part = enc[b:b + batch_size]
        batch = {k: v.to(dev) for k, v in _batch(part, pad).items()}
        logits, target = response_logits(model, batch)
        ce = torch.nn.functional.cross_entropy(logits, target, reduction="none").cpu()
        h = topk_entropy(logits, k).cpu()
        which = np.repeat(np.arange(b, b + len(part)), [(np.array(lab[1:]) != -100).sum() for _, lab in part])
        rows.append(pd.DataFrame({"pair": which, "p_target": torch.exp(-ce).numpy(), "entropy_topk": h.numpy(),
                                  "cross_entropy": ce.numpy()}))
    out = pd.concat(rows, ignore_index=True)
    out["entropy_norm"] = out.entropy_topk / math.log(k)
    return out


def conflict_summary(tokens: pd.DataFrame, max_prob: float, max_entropy: float, alpha: float, scale: float,
                     *, n_boot: int, seed: int) -> pd.DataFrame:
    """The confident conflicts among the tuning tokens (target probability < ``max_prob`` and normalised
    entropy < ``max_entropy``): their share, and how each loss weights them — the mean EAFT weight on
    conflicts and on the other tokens, and each loss's share of the total loss that conflicts carry (SFT:
    Σ CE; EAFT: Σ CE × weight). Intervals: bootstrap over tuning pairs (tokens of a pair move together)."""
    t = tokens.assign(conflict=(tokens.p_target < max_prob) & (tokens.entropy_norm < max_entropy),
                      weight=(tokens.entropy_topk / scale) ** alpha)
    pairs = t.pair.unique()
    groups = {p: g for p, g in t.groupby("pair")}

    def stats(frame: pd.DataFrame) -> dict[str, float]:
        c = frame.conflict.to_numpy()
        ce, w = frame.cross_entropy.to_numpy(), frame.weight.to_numpy()
        return {"share of tokens that are confident conflicts": c.mean(),
                "mean EAFT weight, conflicts": w[c].mean() if c.any() else np.nan,
                "mean EAFT weight, other tokens": w[~c].mean() if (~c).any() else np.nan,
                "share of the SFT loss on conflicts": ce[c].sum() / ce.sum(),
                "share of the EAFT loss on conflicts": (ce * w)[c].sum() / (ce * w).sum(),
                "EAFT − SFT share of the loss on conflicts": (ce * w)[c].sum() / (ce * w).sum() - ce[c].sum() / ce.sum()}

    point = stats(t)
    rng = np.random.default_rng(seed)
    boots = pd.DataFrame([stats(pd.concat([groups[p] for p in rng.choice(pairs, len(pairs))])) for _ in range(n_boot)])
    return pd.DataFrame([{"measure": m, "value": v, "lo": boots[m].quantile(0.025), "hi": boots[m].quantile(0.975),
                          "tokens": len(t), "pairs": len(pairs), "conflict tokens": int(t.conflict.sum())}
                         for m, v in point.items()])


# --------------------------------------------------------------------------- general knowledge


def qa_outcomes(loaded: Any, records: Sequence[Any], max_new_tokens: int, batch_size: int) -> pd.DataFrame:
    """Greedy answers (the paper's prompt, cached per model and question) judged by the rule judge: one
    row per question with ``correct``, ``refused`` and ``hallucinated`` (neither correct nor a refusal)."""
    from hneuron_utils.data.labelling import greedy_answers
    from hneuron_utils.judges import RuleJudge

    got = greedy_answers(loaded, records, max_new_tokens, batch_size, progress=False)
    j = RuleJudge()
    rows = []
    for r in records:
        v = j.judge(r.question, got[r.id]["text"], r.answers)
        rows.append({"id": r.id, "correct": bool(v.correct), "refused": bool(v.refusal),
                     "hallucinated": not v.correct and not v.refusal, "text": got[r.id]["text"]})
    return pd.DataFrame(rows)


def paired_change(before: Sequence[float], after: Sequence[float], n_boot: int, seed: int) -> dict[str, float]:
    """Mean of ``after`` − mean of ``before`` on the same items, with a percentile bootstrap over items."""
    b, a = np.asarray(before, float), np.asarray(after, float)
    if len(a) != len(b) or len(a) == 0:
        raise ValueError("before and after need the same, non-zero number of items")
    d = a - b
    boots = d[np.random.default_rng(seed).integers(0, len(d), (n_boot, len(d)))].mean(1)
    lo, hi = np.quantile(boots, [0.025, 0.975])
    return {"change": float(d.mean()), "change lo": float(lo), "change hi": float(hi), "n": int(len(d))}


def rate_rows(flags: Mapping[str, Sequence[bool]], measure: str, reference: str, n_boot: int, seed: int) -> pd.DataFrame:
    """One row per model: the rate with its Wilson 95% interval and n, and the paired change from ``reference``
    (percentile bootstrap over items)."""
    from hneuron_utils.stats import wilson_interval

    rows = []
    for name, f in flags.items():
        f = [bool(x) for x in f]
        lo, hi = wilson_interval(sum(f), len(f))
        row = {"measure": measure, "model": name, "rate": sum(f) / len(f), "lo": lo, "hi": hi, "n": len(f)}
        if name != reference:
            row.update(paired_change(flags[reference], f, n_boot, seed))
        rows.append(row)
    return pd.DataFrame(rows)


@torch.inference_mode()
def passage_nll(loaded: Any, texts: Sequence[str], batch_size: int, max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """(summed negative log-likelihood, predicted tokens) of each plain ``text`` (no chat template; cut to
    ``max_tokens``): :func:`hneuron_utils.interventions.steering.text_nll` of the unmodified model."""
    from hneuron_utils.interventions.steering import text_nll

    return text_nll(loaded, texts, None, 1.0, batch_size, max_tokens=max_tokens)


def perplexity_rows(nlls: Mapping[str, tuple[np.ndarray, np.ndarray]], reference: str, n_boot: int, seed: int
                    ) -> pd.DataFrame:
    """Perplexity per model (exp of the token-weighted mean NLL) with a bootstrap over passages, and the
    paired ratio to ``reference`` (same passages resampled for both)."""
    rng = np.random.default_rng(seed)
    n = len(next(iter(nlls.values()))[0])
    idx = rng.integers(0, n, (n_boot, n))
    ref_nll, cnt = nlls[reference]
    rows = []
    for name, (nll, c) in nlls.items():
        boots = nll[idx].sum(1) / c[idx].sum(1)
        row = {"measure": "perplexity on held-out passages", "model": name, "rate": math.exp(nll.sum() / c.sum()),
               "lo": math.exp(np.quantile(boots, 0.025)), "hi": math.exp(np.quantile(boots, 0.975)), "n": n}
        if name != reference:
            ratio = np.exp(boots - ref_nll[idx].sum(1) / cnt[idx].sum(1))
            row.update({"change": row["rate"] / math.exp(ref_nll.sum() / cnt.sum()),
                        "change lo": float(np.quantile(ratio, 0.025)), "change hi": float(np.quantile(ratio, 0.975))})
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- weights and the H-neurons


@torch.inference_mode()
def mlp_changes(base: torch.nn.Module, tuned: torch.nn.Module, layers_path: str, layers: Sequence[int]
                ) -> dict[str, np.ndarray]:
    """Per neuron of ``layers`` ([len(layers), d_ff] each, float64): Δ_up and Δ_down (1 − cosine, notebook
    06's drift measure) and the squared change of the neuron's weights (its gate and up rows and its
    down column)."""
    from hneuron_utils.training.drift import _layers

    lb, lt = _layers(base, layers_path), _layers(tuned, layers_path)
    out: dict[str, list] = {"d_up": [], "d_down": [], "sq_change": []}
    cos = torch.nn.functional.cosine_similarity
    for i in layers:
        a, b = lb[i].mlp, lt[i].mlp
        ua, ub = a.up_proj.weight.double(), b.up_proj.weight.double()
        da, db = a.down_proj.weight.double(), b.down_proj.weight.double()
        ga, gb = a.gate_proj.weight.double(), b.gate_proj.weight.double()
        out["d_up"].append((1 - cos(ua, ub, dim=1)).numpy())
        out["d_down"].append((1 - cos(da, db, dim=0)).numpy())
        out["sq_change"].append((((ub - ua) ** 2).sum(1) + ((gb - ga) ** 2).sum(1) + ((db - da) ** 2).sum(0)).numpy())
    return {k: np.stack(v) for k, v in out.items()}


def h_in_layers(h_flat: Sequence[int], d_ff: int, layers: Sequence[int]) -> np.ndarray:
    """Flat indices of the H-neurons that lie in ``layers``, re-indexed into the [len(layers), d_ff] grid."""
    pos = {layer: j for j, layer in enumerate(layers)}
    return np.array([pos[f // d_ff] * d_ff + f % d_ff for f in h_flat if f // d_ff in pos], dtype=np.int64)


def drift_tests(changes: Mapping[str, Mapping[str, np.ndarray]], h_sub: np.ndarray, n_permutations: int, seed: int,
                n_boot: int) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Per loss: notebook 06's inertia test on the trained layers (ranks z-scored globally; two-sided), and
    the share of the total squared weight change the H-neurons take next to their share of the neurons
    (with a bootstrap over H-neurons). Returns (the table, each loss's normalised ranks)."""
    from hneuron_utils.stats import inertia_test
    from hneuron_utils.training.drift import normalised_ranks

    rows, ranks = [], {}
    for loss, ch in changes.items():
        r = normalised_ranks(ch["d_up"], ch["d_down"], "global")
        ranks[loss] = r
        if len(h_sub) == 0:  # nothing to test: a row of NaN that the reading names
            rows.append({"loss": loss, "H-neurons": 0, "neuron share (H)": 0.0})
            continue
        t = inertia_test(r, h_sub, n_permutations, seed)
        sq = ch["sq_change"].ravel()
        per_h = sq[h_sub] / sq.sum()
        boots = per_h[np.random.default_rng(seed).integers(0, len(per_h), (n_boot, len(per_h)))].sum(1)
        rows.append({"loss": loss, **t, "weight-change share (H)": per_h.sum(),
                     "weight-change share lo": float(np.quantile(boots, 0.025)),
                     "weight-change share hi": float(np.quantile(boots, 0.975)),
                     "neuron share (H)": len(h_sub) / sq.size, "total squared change": float(sq.sum())})
    return pd.DataFrame(rows), ranks


def rank_table(ranks: Mapping[str, np.ndarray], h_sub: np.ndarray) -> pd.DataFrame:
    """The H-neurons' normalised drift rank under each loss (one row per loss and H-neuron), for the figure."""
    d_ff = next(iter(ranks.values())).shape[1]
    return pd.DataFrame([{"loss": loss, "trained layer": int(f // d_ff), "neuron": int(f % d_ff), "rank": float(r.ravel()[f])}
                         for loss, r in ranks.items() for f in h_sub], columns=["loss", "trained layer", "neuron", "rank"])


def load_pair_changes(base_name: str, tuned: Mapping[str, str], layers: Sequence[int]) -> dict[str, dict[str, np.ndarray]]:
    """:func:`mlp_changes` of each tuned model (``{loss: folder}``) against the base, all in float32 on the CPU."""
    from hneuron_utils.models.loading import _load_hf, find_layers_path

    base, _, _, _ = _load_hf(base_name, torch.float32, torch.device("cpu"))
    path = find_layers_path(base)
    out = {}
    for loss, folder in tuned.items():
        t, _, _, _ = _load_hf(folder, torch.float32, torch.device("cpu"))
        out[loss] = mlp_changes(base, t, path, layers)
        del t
        gc.collect()
    del base
    gc.collect()
    return out


# --------------------------------------------------------------------------- the detector


# --------------------------------------------------------------------------- readings


# --------------------------------------------------------------------------- notebook 08's steps


def qa_sets(looked: pd.DataFrame, dataset_ids: set[str], records: Sequence[Any], n: int, seed: int
            ) -> tuple[list[Any], list[Any]]:
    """Two seeded sets of ``n`` TriviaQA questions that notebook 01 screened but did not put in its dataset:
    ones its greedy answer got right (forgetting is measured on them) and ones it got wrong (the hallucination
    rate). Raises if either has fewer than ``n``."""
    by_id = {r.id: r for r in records}
    free = looked[~looked.id.isin(dataset_ids) & looked.id.isin(by_id)]
    out = []
    for flag, what in ((True, "answered right"), (False, "answered wrong")):
        ids = sorted(free[free.greedy_correct == flag].id)
        if len(ids) < n:
            raise ValueError(f"notebook 01 screened only {len(ids)} questions outside its dataset that its greedy answer "
                             f"{what}; ft_qa_items = {n} asks for more: lower it or screen a larger pool in 01")
        pick = np.random.default_rng(seed).choice(len(ids), n, replace=False)
        out.append([by_id[ids[i]] for i in sorted(pick)])
    return out[0], out[1]


def train_layer_indices(spec: int | str, *, n_layers: int, h_flat: Sequence[int], d_ff: int) -> tuple[int, ...]:
    """The layers whose MLPs a tuning trains: ``spec`` = k → the last k layers; ``'h_layers'`` → every layer
    holding an H-neuron (flat index // d_ff), in order."""
    if spec == "h_layers":
        if not len(h_flat):
            raise ValueError("ft_train_layers = 'h_layers', but notebook 03 found no H-neurons")
        return tuple(sorted({int(f) // d_ff for f in h_flat}))
    if not isinstance(spec, int) or isinstance(spec, bool) or not 0 < spec <= n_layers:
        raise ValueError(f"ft_train_layers = {spec!r}: need 'h_layers' or an integer in 1..{n_layers} (the model's layers)")
    return tuple(range(n_layers - spec, n_layers))


def tune_config(cfg: Any, pairs: Sequence[Pair], loss: str, *, train_layers: Sequence[int], lr: float,
                stop_after: int = 0) -> Any:
    """The tuning of notebook 08 under ``loss`` at peak learning rate ``lr``, stopped after ``stop_after`` of the
    schedule's ``ft_steps`` steps (0 = all); everything else the same for both losses."""
    from hneuron_utils.training import sft

    if not 0 <= stop_after <= cfg.ft_steps:
        raise ValueError(f"stop_after must lie in [0, ft_steps = {cfg.ft_steps}], got {stop_after}")
    return sft.TuneConfig(base_model=cfg.model, steps=cfg.ft_steps, batch_size=cfg.ft_batch_size, lr=float(lr),
                          warmup_steps=cfg.ft_warmup_steps, max_tokens=cfg.ft_max_tokens, freeze=(), seed=cfg.seed,
                          data_digest=sft.digest_pairs(pairs), loss=loss, eaft_alpha=float(cfg.eaft_alpha),
                          eaft_topk=cfg.eaft_topk, train_layers=tuple(train_layers), autocast=sft.autocast_dtype(),
                          stop_after=0 if stop_after == cfg.ft_steps else int(stop_after))


def measure(loaded: Any, held_out: Sequence[Any], known: Sequence[Any], unknown: Sequence[Any], passages: Sequence[str],
            *, target_format: str, max_new_tokens: int, gen_batch_size: int, batch_size: int,
            reuse: Any = None) -> dict[str, Any]:
    """Everything measured on one model's outputs: the held-out multiple-choice choices, greedy answers to the
    known and unknown TriviaQA questions (each marked when it opens like a tuning target), and the passages' NLL.
    ``reuse``: a :class:`~hneuron_utils.models.lower_layers.ResidualStore` (``across_models``) through which the
    multiple-choice prompts run, so models tuned only above its layer share the layers below."""
    from hneuron_utils.data.medmc import starts_like_target

    qa = {name: qa_outcomes(loaded, recs, max_new_tokens, gen_batch_size) for name, recs in
          (("known", known), ("unknown", unknown))}
    for frame in qa.values():
        frame["opens like a target"] = [starts_like_target(t, target_format) for t in frame.text]
    return {"mc": mc_scores(loaded, held_out, target_format=target_format, batch_size=batch_size, progress=False,
                            forward=reuse),
            **qa, "ppl": passage_nll(loaded, passages, batch_size, 256)}


def outcome_table(measured: Mapping[str, Mapping[str, Any]], reference: str, n_boot: int, seed: int) -> pd.DataFrame:
    """Learning, forgetting and behaviour of every model, with the paired change from ``reference``."""
    parts = [rate_rows({m: v["mc"].correct.tolist() for m, v in measured.items()}, "new domain: held-out accuracy",
                       reference, n_boot, seed),
             rate_rows({m: v["known"].correct.tolist() for m, v in measured.items()},
                       "TriviaQA accuracy on questions answered right before", reference, n_boot, seed),
             perplexity_rows({m: v["ppl"] for m, v in measured.items()}, reference, n_boot, seed),
             rate_rows({m: v["unknown"].hallucinated.tolist() for m, v in measured.items()},
                       "hallucination rate on questions answered wrong before", reference, n_boot, seed),
             rate_rows({m: v["unknown"].refused.tolist() for m, v in measured.items()},
                       "refusal rate on questions answered wrong before", reference, n_boot, seed),
             rate_rows({m: v["known"]["opens like a target"].tolist() + v["unknown"]["opens like a target"].tolist()
                        for m, v in measured.items()},
                       FORMAT_SIDE_EFFECT, reference, n_boot, seed)]
    return pd.concat(parts, ignore_index=True)


FORMAT_SIDE_EFFECT = "TriviaQA answers that open like a tuning target"
LEARNING = "new domain: held-out accuracy"


def manipulation_check(outcomes: pd.DataFrame, tuned: Sequence[str]) -> pd.DataFrame:
    """Did each tuning teach the new domain? Its paired change in held-out accuracy from the untuned model, and
    ``taught`` = the 95% interval's lower bound above 0. The comparison of the losses is read only when every
    tuning taught; otherwise it is inconclusive, whatever its numbers."""
    rows = outcomes[(outcomes.measure == LEARNING) & outcomes.model.isin(list(tuned))]
    if set(rows.model) != set(tuned):
        raise ValueError(f"outcomes lack the held-out accuracy of {sorted(set(tuned) - set(rows.model))}")
    out = rows[["model", "rate", "n", "change", "change lo", "change hi"]].rename(columns={"rate": "accuracy"})
    from hneuron_utils.stats import interval_side

    taught = [interval_side(lo, hi) > 0 for lo, hi in zip(out["change lo"], out["change hi"])]
    return out.assign(taught=taught).reset_index(drop=True)


def head_to_head(measured: Mapping[str, Mapping[str, Any]], a: str, b: str, n_boot: int, seed: int) -> pd.DataFrame:
    """``b`` − ``a`` on every rate measure, paired by item (the same questions under both tunings)."""
    rows = []
    for key, col, what in (("mc", "correct", "new domain: held-out accuracy"),
                           ("known", "correct", "TriviaQA accuracy on questions answered right before"),
                           ("unknown", "hallucinated", "hallucination rate on questions answered wrong before")):
        rows.append({"measure": what, "comparison": f"{b} − {a}",
                     **paired_change(measured[a][key][col], measured[b][key][col], n_boot, seed)})
    return pd.DataFrame(rows)


def detector_table(scored: Mapping[str, tuple[np.ndarray, Mapping[str, np.ndarray]]], reference: str, n_boot: int,
                   seed: int) -> pd.DataFrame:
    """The H-neuron classifier's AUROC on each model (paired change from ``reference``) and, as the control,
    the mean AUROC of the random-neuron classifiers."""
    from hneuron_utils.stats import _auroc

    y = scored[reference][0]
    if any(not np.array_equal(v[0], y) for v in scored.values()):
        raise ValueError("the models' test examples differ")
    t = paired_auroc(y, {m: s["h_neurons"] for m, (_, s) in scored.items()}, reference, n_boot, seed)
    t["random neurons (mean AUROC)"] = [np.mean([_auroc(y, v) for k, v in scored[m][1].items() if k.startswith("random_")])
                                        for m in t.model]
    return t


def model_features(model_name: str, cett_dtype: str, device: str, examples: pd.DataFrame, batch_size: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(answer-token, other-token) CETT, float32 [N, L·F], of notebook 01's examples teacher-forced through
    ``model_name`` in ``cett_dtype`` — notebook 02's features (the same cache when the model is 02's)."""
    from hneuron_utils import models
    from hneuron_utils.data.labelling import teacher_forced_examples
    from hneuron_utils.features.cett import extract_cached
    from hneuron_utils.probes.probe import flatten

    loaded = models.load_model(model_name, dtype=cett_dtype, device=device)
    tf, lost = teacher_forced_examples(loaded.tokenizer, examples)
    if lost:
        raise ValueError(f"{len(lost)} examples lost their answer token under {model_name}: {lost[:3]}")
    ans, oth, _ = extract_cached(loaded, tf, examples.id.tolist(), batch_size=batch_size, progress=False)
    del loaded
    gc.collect()
    return flatten(ans.float().numpy()), flatten(oth.float().numpy())


def reidentify(features: Mapping[str, tuple[np.ndarray, np.ndarray]], examples: pd.DataFrame, meta: Mapping[str, Any],
               original: Sequence[int], layers: Sequence[int], *, tol: float, seed: int) -> pd.DataFrame:
    """Notebook 03's final fit (its C, mode and training examples) repeated on each model's features: the
    H-neurons it finds and their Jaccard overlap with notebook 03's set, overall and within the trained layers."""
    from hneuron_utils.probes.probe import fit_h_probe, h_neurons, jaccard

    tr = (examples.split == "train").to_numpy()
    y = examples.label.to_numpy()
    L, F = int(meta["n_layers"]), int(meta["d_ff"])
    in_trained = set(layers)
    orig = set(int(f) for f in original)
    rows = []
    for name, (ans, oth) in features.items():
        clf = fit_h_probe(ans[tr], oth[tr], y[tr], float(meta["C"]), meta["mode"], seed=seed, tol=tol)
        found = set(h_neurons(clf.coef_[0], L, F).flat_index.astype(int))
        o_t = {f for f in orig if f // F in in_trained}
        f_t = {f for f in found if f // F in in_trained}
        rows.append({"model": name, "H-neurons found": len(found), "shared with 03's set": len(found & orig),
                     "Jaccard with 03's set": jaccard(found, orig), "found in the trained layers": len(f_t),
                     "03's in the trained layers": len(o_t),
                     "Jaccard within the trained layers": jaccard(f_t, o_t) if (f_t or o_t) else np.nan,
                     "converged": bool(clf.converged), "iterations": int(clf.n_iter)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the rule judge against reference labels

OUTCOMES = ("correct", "wrong", "no answer")


def rule_outcome(question: str, response: str, answers: Sequence[str]) -> str:
    """The rule judge's verdict as one of :data:`OUTCOMES` (a refusal = no answer)."""
    from hneuron_utils.judges import RuleJudge

    v = RuleJudge().judge(question, response, tuple(answers))
    return "correct" if v.correct else "no answer" if v.refusal else "wrong"


def answer_rows(measured: Mapping[str, Mapping[str, Any]], sets: Mapping[str, Sequence[Any]]) -> pd.DataFrame:
    """Every greedy TriviaQA answer of every model, with its question, gold aliases and the rule's outcome."""
    rows = []
    for model, m in measured.items():
        for set_name, recs in sets.items():
            got = m[set_name].set_index("id")
            for r in recs:
                g = got.loc[r.id]
                rows.append({"model": model, "set": set_name, "id": r.id, "question": r.question,
                             "answers": list(r.answers), "response": g.text,
                             "rule": "correct" if g.correct else "no answer" if g.refused else "wrong"})
    return pd.DataFrame(rows)


def judge_agreement(labels: pd.DataFrame) -> pd.DataFrame:
    """The rule judge against reference labels (``label`` ∈ :data:`OUTCOMES`) on the two calls notebook 08 counts —
    correct vs not (forgetting) and wrong vs not (the hallucination rate) — with Cohen's κ and the majority
    baseline, over all labels and per model."""
    from hneuron_utils.judges.agreement import agreement_summary

    bad = set(labels.label) - set(OUTCOMES)
    if bad:
        raise ValueError(f"labels must be one of {OUTCOMES}, found {sorted(bad)}")
    rule = [rule_outcome(q, r, a) for q, r, a in zip(labels.question, labels.response, labels.answers)]
    labels = labels.assign(rule=rule)
    rows = []
    for name, g in [("all", labels)] + [(m, g) for m, g in labels.groupby("model", sort=False)]:
        for call in ("correct", "wrong"):
            gold, pred = (g.label == call).to_numpy(), (g.rule == call).to_numpy()
            a = agreement_summary(pred, gold)
            rows.append({"answers": name, "call": f"{call} vs not", "responses": len(g),
                         **{f"reference: {o}": int((g.label == o).sum()) for o in OUTCOMES},
                         "agreement": a["agreement"], "Cohen's kappa": a["kappa"],
                         "majority baseline": a["majority baseline"]})
    return pd.DataFrame(rows)
