"""CETT: the share of a layer's FFN output norm carried by each neuron (the paper's definition).

CETT_{j,t} = |z_{j,t}| · ‖W_down[:, j]‖₂ / ‖h_t‖₂, with z the input of ``down_proj`` (the gated
product) and h its output. The column norms are constant per model and computed once; the
d × d_ff outer product is never materialised.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch


@torch.no_grad()
def down_proj_column_norms(loaded) -> torch.Tensor:
    """‖W_down[:, j]‖₂ for every layer and neuron, as float32 [n_layers, d_ff]. For a model whose traces run
    remotely (``loaded.remote``), the weights are read where they live, inside a one-token trace."""
    if not getattr(loaded, "remote", False):
        return torch.stack([loaded.down_proj_module(i).weight.float().norm(dim=0) for i in range(loaded.n_layers)])
    mods, lm = [loaded.down_proj(i) for i in range(loaded.n_layers)], loaded.lm
    with lm.trace(loaded.tokenizer.eos_token, remote=loaded.remote):
        norms = torch.stack([m.weight.float().norm(dim=0) for m in mods]).save()
    return norms.cpu()


@torch.no_grad()
def cett(z: torch.Tensor, h: torch.Tensor, col_norms: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """CETT per token and neuron, in float32.

    z: [..., d_ff] down_proj input; h: [..., d_model] down_proj output; col_norms: [d_ff].
    """
    hn = h.float().norm(dim=-1, keepdim=True).clamp_min(eps)
    return z.float().abs() * col_norms.float() / hn


def _pad_left(seqs: list[torch.Tensor], value: int | bool) -> torch.Tensor:
    n = max(len(s) for s in seqs)
    out = torch.full((len(seqs), n), value, dtype=seqs[0].dtype)
    for i, s in enumerate(seqs):
        out[i, n - len(s):] = s
    return out


def _reduce(loaded, ids, am, pos, ans, *, oth, n_oth, norms, eps, cache=None, signals=False):
    """One nnsight trace: per layer, Σ_t w_bt·|z_btj|·‖W_down[:,j]‖ for answer and other weights.

    ``n_oth`` is each row's total count of other tokens (including any cached prefix). With
    ``signals``, the same trace also returns each layer's output (the residual stream) averaged over the
    answer tokens, [B, L, d], and the last layer's output at every position that predicts an answer
    token (row-major over (row, position)), [n_predicting, d]; else those two are None.

    The trace body touches only torch and the model's modules (no workbook code), and returns only what it
    saves, so the same body runs remotely on NDIF when ``loaded.remote`` says so (the reduction happens
    there; only [B, L, d_ff] sums come back, in float16). A remote model's last-layer states come back as the model's
    own answer-token confidence instead (see :func:`answer_confidence`), since its head is not here."""
    n_layers, remote, lm = loaded.n_layers, getattr(loaded, "remote", False), loaded.lm
    mods = [loaded.down_proj(layer) for layer in range(n_layers)]
    outs = [loaded.layer(layer) for layer in range(n_layers)] if signals else []
    n_ans = ans.sum(1, keepdim=True).clamp_min(1)
    w_res = (ans / n_ans)[..., None]                                  # [B, T, 1]
    predicting = torch.zeros_like(ans, dtype=torch.bool)
    predicting[:, :-1] = ans[:, 1:].bool()                            # position t predicts answer token t+1
    kw = {"past_key_values": cache, "use_cache": True} if cache is not None else {}
    if remote:
        kw["remote"] = remote
    keep = 0 if (signals and remote) else 1                           # remote confidence needs every logit
    targets = ids[:, 1:][ans[:, 1:].bool()]                           # the answer tokens, in `predicting` order
    with lm.trace({"input_ids": ids, "attention_mask": am, "position_ids": pos}, logits_to_keep=keep, **kw):
        a_layers, o_layers, r_layers = [], [], []
        for layer in range(n_layers):
            z = mods[layer].input
            h = mods[layer].output
            hn = h.float().norm(dim=-1).clamp_min(eps)                    # [B, T]
            w = torch.stack([ans / (hn * n_ans), oth / (hn * n_oth)], 1)  # [B, 2, T]
            r = torch.bmm(w, z.float().abs()) * norms[layer]              # [B, 2, F]
            a_layers.append(r[:, 0])
            o_layers.append(r[:, 1])
            if signals:
                out = outs[layer].output
                out = out[0] if isinstance(out, tuple) else out
                r_layers.append((out.float() * w_res).sum(1))            # [B, d]
                if layer == n_layers - 1 and not remote:
                    last = out[predicting].save()
        if signals and remote:  # the answer tokens' log-probabilities and entropies, [n_predicting, 2]
            logp = torch.log_softmax(lm.output.logits[predicting].float(), -1)
            last = torch.stack([logp.gather(1, targets[:, None])[:, 0], -(logp.exp() * logp).sum(-1)], 1).save()
        a_all = torch.stack(a_layers, 1)
        o_all = torch.stack(o_layers, 1)
        if remote:  # what comes back is the bulk of a remote run: float16, as the stage cache stores it anyway
            a_all, o_all = a_all.half(), o_all.half()
        a_all, o_all = a_all.save(), o_all.save()
        resid = torch.stack(r_layers, 1).save() if signals else None
    if not signals:
        last = None
    return (a_all.float().cpu(), o_all.float().cpu(), (resid.cpu() if signals else None),
            (last.cpu() if signals else None))


CONFIDENCE = ("logprob_mean", "logprob_min", "entropy_mean")


@torch.no_grad()
def answer_confidence(loaded, last_states: torch.Tensor, targets: torch.Tensor, rows: torch.Tensor,
                      n_rows: int) -> torch.Tensor:
    """The model's own confidence in each row's answer tokens, from the last layer's states at the
    positions that predict them: final norm → output head (→ logit soft-cap where the model has one),
    log-softmax in float32. Returns [n_rows, 3]: mean and minimum log-probability of the answer tokens
    and the mean predictive entropy (nats) at those positions (:data:`CONFIDENCE`)."""
    import functools

    parent = functools.reduce(getattr, loaded.layers_path.split(".")[:-1], loaded.hf)
    x = parent.norm(last_states.to(loaded.device))
    logits = loaded.hf.get_output_embeddings()(x).float()
    cap = getattr(loaded.hf.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    logp = torch.log_softmax(logits, -1)
    tok = logp.gather(1, targets.to(logp.device)[:, None])[:, 0].cpu()
    ent = -(logp.exp() * logp).sum(-1).cpu()
    return confidence_per_row(tok, ent, rows, n_rows)


def confidence_per_row(tok: torch.Tensor, ent: torch.Tensor, rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    """Per row: mean and minimum of its answer tokens' log-probabilities ``tok`` and the mean of the entropies
    ``ent`` (one value per answer token; ``rows`` names each token's row), [n_rows, 3] (:data:`CONFIDENCE`);
    NaN for a row without answer tokens."""
    out = torch.full((n_rows, 3), float("nan"))
    for r in range(n_rows):
        m = rows == r
        if m.any():
            out[r] = torch.stack([tok[m].mean(), tok[m].min(), ent[m].mean()])
    return out


@torch.no_grad()
def extract(loaded, examples: list, batch_size: int = 16, progress: bool = True, share_prefix: bool = True,
            *, eps: float = 1e-12, with_signals: bool = False):
    """Mean CETT over answer tokens and over all other (non-pad) tokens, for every layer and neuron.

    ``examples`` are :class:`hneuron_utils.text.tokens.TeacherForced`. The token prefix every example shares
    (the chat template's system turn) is run once: its keys/values are reused by every batch and its
    CETT sums are added to each example's other-token mean. Then one nnsight trace per batch (sorted by
    length, left-padded, mask-derived position ids, logits for the last position only) reads every
    layer's ``down_proj`` input and output and reduces to per-example means inside the trace, so no
    [batch, tokens, d_ff] activation outlives its layer. Returns two float32 tensors [N, n_layers, d_ff].

    With ``with_signals`` the same pass also returns a dict of baseline signals (notebook 03's
    baselines): ``resid`` [N, n_layers, d_model], each layer's output averaged over the answer tokens,
    and ``confidence`` [N, 3], the model's own :func:`answer_confidence`.

    For a model whose traces run remotely (``loaded.remote``: NDIF, or nnsight's in-process simulation of
    it), every batch is one remote trace, without the shared prefix.
    """
    from hneuron_utils.progress import bar

    from hneuron_utils.text.generation import _common_prefix, _expand_cache, length_batches

    norms = down_proj_column_norms(loaded).to(loaded.device)
    n, L, F = len(examples), loaded.n_layers, loaded.d_ff
    ans_out = torch.zeros(n, L, F)
    oth_out = torch.zeros(n, L, F)
    sig = {"resid": torch.zeros(n, L, loaded.d_model), "confidence": torch.full((n, 3), float("nan"))}
    if n == 0:
        return (ans_out, oth_out, sig) if with_signals else (ans_out, oth_out)
    dev = loaded.device
    # a remote trace cannot take this process's key/value cache: no shared prefix there
    share_prefix = share_prefix and not getattr(loaded, "remote", False)
    P = _common_prefix([ex.input_ids.tolist() for ex in examples]) if share_prefix and n > 1 else 0
    # never cache an answer token, nor the token that predicts the first one
    P = max(0, min([P] + [int(ex.answer.nonzero()[0]) - 1 for ex in examples]))
    prefix_kv, prefix_sum = [], torch.zeros(L, F)
    if P:
        from transformers import DynamicCache

        pc = DynamicCache(config=loaded.hf.config)
        ids = examples[0].input_ids[None, :P].to(dev)
        one = torch.ones_like(ids)
        _, prefix_sum, _, _ = _reduce(loaded, ids, one, torch.arange(P, device=dev)[None],
                                      torch.zeros(1, P, device=dev), oth=torch.ones(1, P, device=dev),
                                      n_oth=torch.ones(1, 1, device=dev), norms=norms, eps=eps, cache=pc)
        prefix_sum = prefix_sum[0]  # Σ over prefix tokens of CETT, [L, F]
        prefix_kv = [(layer.keys, layer.values) for layer in pc.layers]
    batches = length_batches([len(ex.input_ids) for ex in examples], batch_size)
    pad = loaded.tokenizer.pad_token_id
    for idx in bar(batches, show=progress, desc="CETT", mininterval=10.0):
        tails = [examples[i].input_ids[P:] for i in idx]
        ids = _pad_left(tails, pad).to(dev)
        am_t = _pad_left([torch.ones_like(t) for t in tails], 0).to(dev)
        am = torch.cat([torch.ones(len(idx), P, dtype=am_t.dtype, device=dev), am_t], 1)
        ans = _pad_left([examples[i].answer[P:] for i in idx], False).to(dev).float()
        oth = am_t.float() - ans
        n_oth = (oth.sum(1, keepdim=True) + P).clamp_min(1)
        pos = (am.cumsum(-1) - 1).clamp(min=0)[:, P:]
        cache = _expand_cache(loaded.hf, prefix_kv, len(idx)) if P else None
        a, o, resid, last = _reduce(loaded, ids, am, pos, ans, oth=oth, n_oth=n_oth, norms=norms, eps=eps, cache=cache,
                                    signals=with_signals)
        ans_out[idx] = a
        oth_out[idx] = o + prefix_sum[None] / n_oth.cpu()[:, :, None]
        if with_signals:
            sig["resid"][idx] = resid
            ab = ans.bool().cpu()
            rows = torch.arange(len(idx))[:, None].expand_as(ab)[ab]
            sig["confidence"][idx] = (confidence_per_row(last[:, 0], last[:, 1], rows, len(idx))
                                      if getattr(loaded, "remote", False)  # computed in the remote trace
                                      else answer_confidence(loaded, last, ids.cpu()[ab], rows, len(idx)))
    return (ans_out, oth_out, sig) if with_signals else (ans_out, oth_out)


@torch.no_grad()
def extract_reference(hf_model, layers, examples: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain reference: one forward per example (no padding, no nnsight), PyTorch forward hooks on
    every ``down_proj``, CETT per token computed in float64 from the hooked z and h, then masked means.
    Pass a float64 model for an all-float64 reference (cheap on small models)."""
    caught: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = [layer.mlp.down_proj.register_forward_hook(
        lambda mod, inp, out, i=i: caught.__setitem__(i, (inp[0][0].double(), out[0].double())))
        for i, layer in enumerate(layers)]
    cols = [layer.mlp.down_proj.weight.double().norm(dim=0) for layer in layers]
    try:
        A, O = [], []
        for ex in examples:
            hf_model(input_ids=ex.input_ids[None].to(cols[0].device), logits_to_keep=1)
            a_l, o_l = [], []
            for i in range(len(layers)):
                z, h = caught[i]
                c = z.abs() * cols[i] / h.norm(dim=-1, keepdim=True)  # [T, F], the exact definition
                a_l.append(c[ex.answer].mean(0))
                o_l.append(c[~ex.answer].mean(0))
            A.append(torch.stack(a_l).cpu())
            O.append(torch.stack(o_l).cpu())
    finally:
        for hk in hooks:
            hk.remove()
    return torch.stack(A), torch.stack(O)


def features_key(loaded, examples: list, ids: list[str]) -> dict:
    """Everything that changes the features: the model, and every example's tokens and answer mask."""
    from hneuron_utils.models import model_key
    from hneuron_utils.cache import digest

    content = [(i, ex.input_ids.tolist(), ex.answer.nonzero().flatten().tolist()) for i, ex in zip(ids, examples)]
    return {"stage": "cett", "version": 3, "model": model_key(loaded), "examples": digest(content, 32), "n": len(ids)}


def extract_cached(loaded, examples: list, ids: list[str], batch_size: int = 16, shard_size: int = 64,
                   *, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """:func:`extract` (with its baseline signals) in shards of ``shard_size`` examples, each stored on
    disk as soon as it is done (CETT and residual means as float16, confidence as float32; keyed by
    :func:`features_key`), so an interrupted extraction resumes at the next shard. Returns (answer,
    other) float16 [N, n_layers, d_ff] and a small record of what was done; :func:`load_signals` reads
    the signals."""
    import os
    import time

    from hneuron_utils.progress import bar

    from hneuron_utils.cache import stage_dir

    key = features_key(loaded, examples, ids)
    d = stage_dir("cett", key)
    starts = list(range(0, len(examples), shard_size))
    t0, computed = time.perf_counter(), 0
    for s in bar(starts, show=progress, desc="CETT shards", mininterval=5.0):
        f = d / f"shard_{s // shard_size:05d}.pt"
        if f.exists():
            continue
        a, o, sig = extract(loaded, examples[s:s + shard_size], batch_size=batch_size, progress=False,
                            with_signals=True)
        tmp = f.with_name(f.name + f".tmp{os.getpid()}")
        torch.save({"ids": ids[s:s + shard_size], "answer": a.half(), "other": o.half(),
                    "resid": sig["resid"].half(), "confidence": sig["confidence"].float()}, tmp)
        os.replace(tmp, f)
        computed += 1
    got, ans, oth = load_features(d)
    if got != list(ids):
        raise RuntimeError(f"CETT cache {d} holds shards for other examples; delete it and re-run")
    return ans, oth, {"cache": str(d), "key": d.name, "shards": len(starts), "computed now": computed,
                      "seconds": round(time.perf_counter() - t0, 1)}


def load_features(cache_dir) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """All shards of a CETT cache folder, in order: (example ids, answer, other) float16 [N, L, F]."""
    from pathlib import Path

    files = sorted(Path(cache_dir).glob("shard_*.pt"))
    if not files:
        raise FileNotFoundError(f"no CETT shards in {cache_dir}: run notebook 02 first")
    parts = [torch.load(f) for f in files]
    return ([i for p in parts for i in p["ids"]], torch.cat([p["answer"] for p in parts]),
            torch.cat([p["other"] for p in parts]))


def load_signals(cache_dir) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """The baseline signals of a CETT cache folder, in order: (example ids, residual means float16
    [N, n_layers, d_model], confidence float32 [N, 3] with columns :data:`CONFIDENCE`)."""
    from pathlib import Path

    files = sorted(Path(cache_dir).glob("shard_*.pt"))
    if not files:
        raise FileNotFoundError(f"no CETT shards in {cache_dir}: run notebook 02 first")
    parts = [torch.load(f) for f in files]
    if any("resid" not in p for p in parts):
        raise FileNotFoundError(f"{cache_dir} predates the baseline signals: delete it and re-run notebook 02")
    return ([i for p in parts for i in p["ids"]], torch.cat([p["resid"] for p in parts]),
            torch.cat([p["confidence"] for p in parts]))


def features_dir(record: dict):
    """The stage folder named by a ``02_features.json`` record (its stage key, not a machine's path)."""
    from hneuron_utils.paths import cache_root

    d = cache_root() / "stages" / "cett" / record["key"]
    if not any(d.glob("shard_*.pt")):
        raise FileNotFoundError(f"the CETT features of this run (stage key {record['key']}) are not in this "
                                f"machine's cache ({d}): run notebook 02 with the same run_name first")
    return d


def batch_independence(loaded, examples: list, cached: torch.Tensor, n: int) -> dict[str, float]:
    """Re-extract the first ``n`` examples one at a time (no shared prefix, no padding) and compare with
    the batched, cached answer features (float16): how much does an example's feature vector depend on
    the batch it was extracted in? Relative differences over features ≥ 1e-4 (smaller ones are below the
    float16 storage's resolution)."""
    n = min(n, len(examples))
    if n == 0:
        return {"examples": 0}
    solo, _ = extract(loaded, examples[:n], batch_size=1, share_prefix=False, progress=False)
    a, b = solo.half().float(), cached[:n].float()
    m = b >= 1e-4
    rel = ((a - b).abs()[m] / b[m])
    return {"examples": n, "features compared": int(m.sum()), "identical after float16 storage": float((a == b).float().mean()),
            "median relative difference": float(rel.median()), "99.9th percentile": float(rel.quantile(0.999))
            if rel.numel() < 2 ** 24 else float(rel[torch.randperm(rel.numel())[:2 ** 23]].quantile(0.999)),
            "max relative difference": float(rel.max())}


def feature_record(info: dict, n: int, model: str, dtype: Any) -> dict:
    """What notebook 02 writes to ``02_features.json``: the stage key (so another machine with the same
    cache finds the features), not this machine's path."""
    return {"key": info["key"], "n": n, "model": model, "dtype": str(dtype).replace("torch.", "")}


def extraction_summary(ans: torch.Tensor, examples: list, info: dict, load_seconds: float, dtype: Any) -> pd.Series:
    """The size and cost of an extraction, one row per quantity."""
    return pd.Series({"examples": len(examples), "tokens": sum(len(t.input_ids) for t in examples),
                      "features per example (×2)": ans.shape[1] * ans.shape[2],
                      "float16 size on disk (MB)": round(2 * ans.numel() * 2 / 1e6, 1),
                      "extraction seconds (this run)": info["seconds"], "shards computed now": info["computed now"],
                      "of shards": info["shards"], "model load seconds": round(load_seconds, 1),
                      "dtype": str(dtype).replace("torch.", "")}, dtype=object, name="value")


def layer_means(ans: torch.Tensor, oth: torch.Tensor, labels: Any) -> pd.DataFrame:
    """Mean CETT per layer over the answer tokens of hallucinated (label 1) and faithful (label 0)
    examples and over all examples' other tokens: rows (tokens, layer, mean_cett)."""
    y = torch.as_tensor(np.asarray(labels))
    groups = [("answer, hallucinated", ans, y == 1), ("answer, faithful", ans, y == 0),
              ("other tokens, all", oth, torch.ones_like(y, dtype=torch.bool))]
    rows = [{"tokens": name, "layer": i, "mean_cett": float(v)}
            for name, feats, mask in groups for i, v in enumerate(feats[mask].float().mean(dim=(0, 2)))]
    return pd.DataFrame(rows)


def mark_answer(tokenizer: Any, example: Any) -> str:
    """A teacher-forced example decoded token by token, its answer tokens in [brackets]."""
    return "".join(f"[{tokenizer.decode(t)}]" if a else tokenizer.decode(t)
                   for t, a in zip(example.input_ids.tolist(), example.answer.tolist()))


def load_for(examples: pd.DataFrame, record: dict, model: str | None = None) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """Notebook 02's features of ``examples`` (answer, other: float16 [N, L, F]) and the stage folder they
    are in, found by the ``02_features.json`` record and checked to belong to these examples (and, when
    given, to ``model``)."""
    if model is not None and record["model"] != model:
        raise ValueError(f"features were extracted with {record['model']}, not {model}: re-run notebook 02")
    d = features_dir(record)
    ids, ans, oth = load_features(d)
    if ids != examples.id.tolist():
        raise ValueError("the cached features do not belong to 01_examples.jsonl: re-run notebook 02")
    return ans, oth, d
