"""Benchmarks of the two expensive stages, against the obvious way of doing them.

    python -m hneuron_utils.workbook.bench cett   [--model M] [--examples 200] [--batch-size 16]
    python -m hneuron_utils.workbook.bench sample [--model M] [--questions 64] [--samples 10]
    python -m hneuron_utils.workbook.bench steer  [--model M] [--items 24] [--alphas 0 1 2 3] [--sets 3]
    python -m hneuron_utils.workbook.bench tune   [--model M] [--steps 6] [--val-items 48]

``cett`` times, in the model's bfloat16 (on this CPU): our extraction (:func:`cett.extract`); a
per-example extraction in the style of the official script (one full forward per example with logits
for every position, hooks keeping every layer's activations, then reducing); and the bare batched
forward pass with nothing read. It prints examples per second, the ratios, and the achieved FLOP rate
as a share of this CPU's bf16 matmul rate measured in the same run.

``steer`` times 05's responses under neuron scaling: every condition (a neuron set and α) of the same
FalseQA items decoded one condition after another (the per-condition path), against all conditions of
the items in one decoding batch (``steering.responses_batched``, per-row scales, the prompts' common prefix
prefilled once per condition), and the batched path without that prefix sharing, all bf16 greedy, each on
an empty cache. It prints item-conditions per second, the ratio, and the share of the bf16 matmul rate
(body FLOPs of every prompt and new token, as if nothing were shared).

``sample`` times 01's sampling stage (:func:`generation.sample_many`, bf16) against one Hugging Face
``generate`` call per question with ``num_return_sequences=K`` in float32, and prints sequences per
second and the ratio. Results are also written as JSON under ``results/bench/``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch

from hneuron_utils.features import cett
from hneuron_utils import data, judges, models
from hneuron_utils.text import generation, tokens
from hneuron_utils import paths


def matmul_rate(dtype: torch.dtype = torch.bfloat16, n: int = 2048, reps: int = 10, budget_s: float = 2.0) -> float:
    """Measured dense matmul rate of this CPU in FLOP/s: ``reps`` products of two n × n matrices after a
    warm-up, fewer (at least one, on smaller matrices if one product exceeds it) where they would take more
    than ``budget_s`` — a CPU without native bfloat16 emulates it some twenty times slower than float32, and
    2048² × 10 would then take minutes."""
    size = min(n, 256)
    while True:  # grow the matrices from 256 while a product 8 times larger still fits the budget
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        t = time.perf_counter()
        a @ b  # warm-up, and the time of one product
        one = time.perf_counter() - t
        if size >= n or 8 * one > budget_s / 4:
            break
        size *= 2
    n = size
    reps = max(1, min(reps, int(budget_s / max(one, 1e-9))))
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


def bench_examples(loaded: Any, n: int, seed: int = 0) -> list[tokens.TeacherForced]:
    """``n`` teacher-forced TriviaQA examples: the question with its first gold alias as the response."""
    recs = data.sample(data.load_dataset("triviaqa"), n, seed)
    out = []
    for r in recs:
        resp = r.answers[0]
        v = judges.RuleJudge().judge(r.question, resp, r.answers)
        out.append(tokens.teacher_forced(loaded.tokenizer, generation.qa_prompt(loaded.tokenizer, r.question),
                                         resp, v.span))
    return out


def _body_params(hf: torch.nn.Module) -> int:
    """Parameters a token passes through, excluding the embedding lookup and the output head."""
    head = hf.get_output_embeddings()
    emb = hf.get_input_embeddings()
    skip = {id(p) for p in list(head.parameters()) + list(emb.parameters())}
    return sum(p.numel() for p in hf.parameters() if id(p) not in skip)


@torch.no_grad()
def per_example_style(loaded: Any, examples: list) -> tuple[torch.Tensor, torch.Tensor]:
    """The official script's way: one full forward per example (all logits), hooks keep every layer's
    [T, d_ff] input and [T, d] output of down_proj, then CETT is reduced from the kept activations."""
    norms = cett.down_proj_column_norms(loaded)
    kept: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    mods = [loaded.down_proj_module(i) for i in range(loaded.n_layers)]
    hooks = [m.register_forward_hook(lambda mod, i_, o_, i=i: kept.__setitem__(i, (i_[0][0], o_[0])))
             for i, m in enumerate(mods)]
    A, O = [], []
    try:
        for ex in examples:
            loaded.hf(input_ids=ex.input_ids[None])
            a_l, o_l = [], []
            for i in range(loaded.n_layers):
                z, h = kept[i]
                c = cett.cett(z, h, norms[i])
                a_l.append(c[ex.answer].mean(0))
                o_l.append(c[~ex.answer].mean(0))
            A.append(torch.stack(a_l))
            O.append(torch.stack(o_l))
    finally:
        for hk in hooks:
            hk.remove()
    return torch.stack(A), torch.stack(O)


@torch.no_grad()
def bare_forward(loaded: Any, examples: list, batch_size: int) -> None:
    """The same length-sorted, left-padded batches through the model, nothing read, last logits only."""
    pad = loaded.tokenizer.pad_token_id
    for idx in generation.length_batches([len(ex.input_ids) for ex in examples], batch_size):
        ids = cett._pad_left([examples[i].input_ids for i in idx], pad)
        am = cett._pad_left([torch.ones_like(examples[i].input_ids) for i in idx], 0)
        pos = (am.cumsum(-1) - 1).clamp(min=0)
        loaded.hf(input_ids=ids, attention_mask=am, position_ids=pos, logits_to_keep=1)


def _timed(fn, *a, **kw) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn(*a, **kw)
    return time.perf_counter() - t, out


def run_cett(model: str, n: int, batch_size: int, dtype: str = "bfloat16") -> dict[str, Any]:
    loaded = models.load_model(model, dtype=dtype)
    ex = bench_examples(loaded, n)
    peak = matmul_rate(loaded.dtype)
    tokens_real = sum(len(e.input_ids) for e in ex)
    body = _body_params(loaded.hf)
    head = loaded.hf.get_output_embeddings().weight.numel()
    cett.extract(loaded, ex[:4], batch_size=4, progress=False)  # warm-up
    t_ours, (a1, o1) = _timed(cett.extract, loaded, ex, batch_size=batch_size, progress=False)
    t_noprefix, _ = _timed(cett.extract, loaded, ex, batch_size=batch_size, progress=False, share_prefix=False)
    t_bare, _ = _timed(bare_forward, loaded, ex, batch_size)
    t_per, (a2, o2) = _timed(per_example_style, loaded, ex)
    rel = float(max((a1 - a2).norm() / a2.norm(), (o1 - o2).norm() / o2.norm()))
    # FLOPs actually executed: real tokens through the body (ours runs the shared prefix once), plus
    # the output head for one position per example (ours, bare) or every position (per-example style)
    P = generation._common_prefix([e.input_ids.tolist() for e in ex])
    fl_ours = 2 * body * (tokens_real - P * (n - 1)) + 2 * head * n
    fl_full = 2 * body * tokens_real + 2 * head * n
    fl_per = 2 * (body + head) * tokens_real
    res = {
        "model": model, "dtype": str(loaded.dtype).replace("torch.", ""), "examples": n, "batch_size": batch_size,
        "tokens": tokens_real, "shared prefix tokens": P, "matmul GFLOP/s in this dtype (measured now)": round(peak / 1e9, 1),
        "seconds": {"ours": round(t_ours, 2), "ours without prefix sharing": round(t_noprefix, 2),
                    "bare batched forward": round(t_bare, 2), "per-example (official style)": round(t_per, 2)},
        "examples/s": {"ours": round(n / t_ours, 2), "ours without prefix sharing": round(n / t_noprefix, 2),
                       "bare batched forward": round(n / t_bare, 2),
                       "per-example (official style)": round(n / t_per, 2)},
        "speed-up over per-example": round(t_per / t_ours, 2),
        "time vs bare batched forward": round(t_ours / t_bare, 3),
        "time vs bare batched forward, without prefix sharing": round(t_noprefix / t_bare, 3),
        "share of matmul peak (executed FLOPs)": {
            "ours": round(fl_ours / t_ours / peak, 3), "ours without prefix sharing": round(fl_full / t_noprefix / peak, 3),
            "bare batched forward": round(fl_full / t_bare / peak, 3),
            "per-example (official style)": round(fl_per / t_per / peak, 3)},
        "max relative difference ours vs per-example (both bf16)": rel,
    }
    return res


def run_sample(model: str, n: int, k: int, batch_size: int, max_new_tokens: int = 50) -> dict[str, Any]:
    recs = data.sample(data.load_dataset("triviaqa"), n, 1)
    s = generation.Sampling(do_sample=True, max_new_tokens=max_new_tokens)
    fast = models.load_model(model, dtype="bfloat16")
    prompts = [generation.qa_prompt(fast.tokenizer, r.question) for r in recs]
    t_ours, outs = _timed(generation.sample_many, fast, prompts, k, s, seed=0, batch_size=batch_size, progress=False)
    del fast
    slow = models.load_model(model, dtype="float32")
    tok = slow.tokenizer

    @torch.no_grad()
    def obvious() -> int:
        n_seq = 0
        torch.manual_seed(0)
        for p in prompts:
            enc = tok(p, return_tensors="pt", add_special_tokens=False)
            out = slow.hf.generate(**enc, **s.kwargs(), num_return_sequences=k, eos_token_id=slow.stop_token_ids(),
                                   pad_token_id=tok.pad_token_id)
            n_seq += out.shape[0]
        return n_seq

    t_obv, n_seq = _timed(obvious)
    seqs = n * k
    mean_tokens = sum(len(x.token_ids) for o in outs for x in o) / seqs
    return {"model": model, "questions": n, "samples per question": k, "max_new_tokens": max_new_tokens,
            "mean new tokens (ours)": round(mean_tokens, 1),
            "seconds": {"ours (bf16)": round(t_ours, 1), "one generate per question (float32)": round(t_obv, 1)},
            "sequences/s": {"ours (bf16)": round(seqs / t_ours, 2),
                            "one generate per question (float32)": round(n_seq / t_obv, 2)},
            "speed-up": round(t_obv / t_ours, 2)}


def run_steer(model: str, n: int, alphas: tuple[float, ...], sets: int, k: int, *, batch_size: int,
              max_new_tokens: int = 48) -> dict[str, Any]:
    """Per-condition vs batched responses of 05 on the same ``n`` FalseQA items: ``sets`` random sets of
    ``k`` neurons at every α ≠ 1 plus the unmodified model, greedy, bf16, each path on its own empty cache."""
    import os
    import tempfile

    from hneuron_utils.data import overcompliance as oc
    from hneuron_utils.interventions import steering
    from hneuron_utils.monitor.longform import random_neurons

    loaded = models.load_model(model, dtype="bfloat16")
    items = oc.load_falseqa()[:n]
    convs = [oc.MESSAGES["falseqa"](it) for it in items]
    ids = [it.id for it in items]
    nf = loaded.n_layers * loaded.d_ff
    neuron_sets = {f"set {d}": random_neurons(nf, [], k, d) for d in range(sets)}
    conds = {(nm, a): (None if nm == "none" else neuron_sets[nm], a)
             for nm, a in steering.conditions(neuron_sets, alphas)}
    s = generation.Sampling(max_new_tokens=max_new_tokens)
    peak = matmul_rate(loaded.dtype)
    body = _body_params(loaded.hf)
    old_cache = os.environ.get("HNEURON_CACHE")
    try:
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b, \
                tempfile.TemporaryDirectory() as w, tempfile.TemporaryDirectory() as u:
            os.environ["HNEURON_CACHE"] = w
            steering.responses(loaded, ids[:2], convs[:2], None, 1.0, sampling=s, batch_size=batch_size)  # warm-up
            os.environ["HNEURON_CACHE"] = b
            t_per, per = _timed(lambda: {c: steering.responses(loaded, ids, convs, f, al, sampling=s, batch_size=batch_size)
                                         for c, (f, al) in conds.items()})
            os.environ["HNEURON_CACHE"] = a
            t_bat, bat = _timed(steering.responses_batched, loaded, ids, {c: convs for c in conds}, conds, s,
                                batch_size=batch_size, items_per_call=n)
            os.environ["HNEURON_CACHE"] = u
            t_uns, _ = _timed(steering.responses_batched, loaded, ids, {c: convs for c in conds}, conds, s,
                              batch_size=batch_size, items_per_call=n, share_prefix=False)
    finally:
        if old_cache is None:
            os.environ.pop("HNEURON_CACHE", None)
        else:
            os.environ["HNEURON_CACHE"] = old_cache
    ic = n * len(conds)
    prompt_tokens = sum(len(loaded.tokenizer(generation.render(loaded.tokenizer, c))["input_ids"]) for c in convs)
    new_tokens = sum(r["n_tokens"] for c in conds for r in bat[c].values())
    flops = 2 * body * (prompt_tokens * len(conds) + new_tokens)
    same = sum(bat[c][i]["text"] == per[c][i]["text"] for c in conds for i in ids)
    return {"model": model, "dtype": "bfloat16", "items": n, "conditions": len(conds), "alphas": list(alphas),
            "neuron sets": sets, "neurons per set": k, "batch_size": batch_size, "max_new_tokens": max_new_tokens,
            "prompt tokens per condition": prompt_tokens, "new tokens (batched)": new_tokens,
            "matmul GFLOP/s in this dtype (measured now)": round(peak / 1e9, 1),
            "seconds": {"per-condition": round(t_per, 2), "batched": round(t_bat, 2),
                        "batched, no prefix sharing": round(t_uns, 2)},
            "item-conditions/s": {"per-condition": round(ic / t_per, 2), "batched": round(ic / t_bat, 2),
                                  "batched, no prefix sharing": round(ic / t_uns, 2)},
            "speed-up": round(t_per / t_bat, 2),
            "share of matmul peak (body FLOPs of prompts and new tokens)": {
                "per-condition": round(flops / t_per / peak, 3), "batched": round(flops / t_bat / peak, 3),
                "batched, no prefix sharing": round(flops / t_uns / peak, 3)},
            "identical responses, batched vs per-condition (bf16: batch composition can change a few)":
                f"{same} of {ic}"}


def run_monitor(model: str, n: int, batch_size: int, max_new_tokens: int = 80, k: int = 45,
                *, resid_layer: int | None = -1) -> dict[str, Any]:
    """The streaming monitor's overhead: the same greedy answers decoded by the monitored loop with plain
    model calls and with the traced calls that read ``k`` neurons' CETT (spread over the layers) and, unless
    None, one residual layer."""
    from hneuron_utils.monitor import live
    from hneuron_utils.monitor.longform import LONGFORM_SUFFIX, random_neurons

    recs = data.sample(data.load_dataset("triviaqa"), n, 1)
    loaded = models.load_model(model, dtype="bfloat16")
    prompts = [generation.chat_prompt(loaded.tokenizer, r.question + LONGFORM_SUFFIX) for r in recs]
    flat = random_neurons(loaded.n_layers * loaded.d_ff, [], k, 0)
    layer = None if resid_layer is None else resid_layer % loaded.n_layers
    res = live.timed_decoding(loaded, prompts, flat, generation.Sampling(max_new_tokens=max_new_tokens), batch_size, resid_layer=layer)
    return {"model": model, "answers": n, "batch size": batch_size, "max_new_tokens": max_new_tokens,
            "neurons read": k, "residual layer": layer, **{k2: round(v, 3) for k2, v in res.items()},
            "tokens/s": {"plain": round(res["plain_tokens"] / res["plain_seconds"], 1),
                         "monitored": round(res["monitored_tokens"] / res["monitored_seconds"], 1)}}


def run_tune(model: str, *, steps: int, val_items: int, eval_batch_size: int) -> dict[str, Any]:
    """Notebook 08's tuning and validation with and without the lower layers reused
    (:mod:`hneuron_utils.models.lower_layers`), with the default profile's 08 settings: ``steps`` tuning steps
    three times (no reuse; the first run of a grid, which computes and stores the residuals; a later run,
    which reuses them all) and one validation evaluation four ways (items in their order with every layer, as
    before; sorted by length; sorted with the residuals computed; sorted with them reused)."""
    import dataclasses
    import tempfile
    from pathlib import Path

    from hneuron_utils.data import medmc
    from hneuron_utils.training import forgetting, sft
    from hneuron_utils.workbook import config

    cfg = config.Config(config.load_profile("default"))
    items = medmc.load_medmc()
    train_items, _ = forgetting.mc_split(items, n_train=cfg.ft_train_items, n_eval=cfg.ft_eval_items, seed=cfg.seed)
    val, fit = train_items[:val_items], train_items[cfg.ft_val_items:]
    pairs = forgetting.mc_pairs(fit, target_format=cfg.ft_target_format)
    loaded = models.load_model(model, dtype="float32")
    layers = forgetting.train_layer_indices(cfg.ft_train_layers, n_layers=loaded.n_layers, h_flat=[],
                                            d_ff=loaded.d_ff)
    del loaded
    tcfg = dataclasses.replace(forgetting.tune_config(cfg, pairs, "sft", train_layers=layers, lr=1e-4), steps=steps,
                               base_model=model)
    seconds: dict[str, float] = {}
    keep_store = sft._residual_store
    with tempfile.TemporaryDirectory() as tmp:
        sft._residual_store = lambda m, c: None
        try:
            seconds["tuning steps, every layer"] = sft.tune(tcfg, pairs, Path(tmp) / "plain", progress=False)["seconds"]
        finally:
            sft._residual_store = keep_store
        sft._RESIDUALS.clear()
        seconds["tuning steps, residuals computed (first rate)"] = sft.tune(tcfg, pairs, Path(tmp) / "a",
                                                                          progress=False)["seconds"]
        seconds["tuning steps, residuals reused (later rates)"] = sft.tune(tcfg, pairs, Path(tmp) / "b",
                                                                          progress=False)["seconds"]
        same = all(torch.equal(p, q) for p, q in zip(
            models.load_model(str(Path(tmp) / "plain"), dtype="float32").hf.parameters(),
            models.load_model(str(Path(tmp) / "b"), dtype="float32").hf.parameters()))
    sft._RESIDUALS.clear()
    loaded = models.load_model(model, dtype="float32")
    for n, p in loaded.hf.named_parameters():
        p.requires_grad = any(n.startswith(f"model.layers.{k}.mlp.") for k in layers)
    loaded.hf.eval()
    tok = loaded.tokenizer
    prompts = forgetting.mc_prompts(tok, val, target_format=cfg.ft_target_format)
    _, letters = forgetting.letter_reading(tok, medmc.score_prefix(cfg.ft_target_format))
    reads = {}

    def unsorted() -> int:
        read = forgetting.letter_choices(loaded.hf, tok, prompts, [len(it.options) for it in val], letters=letters,
                                         batch_size=eval_batch_size)
        return sum(r["choice"] == it.correct for r, it in zip(read, val))

    fast = forgetting.ValidationScorer(val, target_format=cfg.ft_target_format, batch_size=eval_batch_size,
                                       reuse_below=min(layers))
    plain = forgetting.ValidationScorer(val, target_format=cfg.ft_target_format, batch_size=eval_batch_size)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for name, fn in [("evaluation, item order, every layer (before)", unsorted),
                         ("evaluation, sorted, every layer", lambda: plain(loaded.hf, tok)["validation correct"]),
                         ("evaluation, sorted, residuals computed (first)", lambda: fast(loaded.hf, tok)["validation correct"]),
                         ("evaluation, sorted, residuals reused (later)", lambda: fast(loaded.hf, tok)["validation correct"])]:
            seconds[name], reads[name] = _timed(fn)
    s = {k: round(v, 1) for k, v in seconds.items()}
    return {"model": model, "tuning steps": steps, "tuning batch size": cfg.ft_batch_size, "trained layers": list(layers),
            "validation items": len(val), "evaluation batch size": eval_batch_size, "seconds": s,
            "speed-up": {"tuning step, later rates": round(seconds["tuning steps, every layer"]
                                                        / seconds["tuning steps, residuals reused (later rates)"], 2),
                         "evaluation, later": round(seconds["evaluation, item order, every layer (before)"]
                                                    / seconds["evaluation, sorted, residuals reused (later)"], 2)},
            "identical weights, reused vs every layer": same, "validation correct": reads}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hneuron_utils.workbook.bench", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    c = sub.add_parser("cett")
    c.add_argument("--model", default="qwen2.5-coder-1.5b-instruct")
    c.add_argument("--examples", type=int, default=200)
    c.add_argument("--batch-size", type=int, default=16)
    s = sub.add_parser("sample")
    s.add_argument("--model", default="qwen2.5-coder-1.5b-instruct")
    s.add_argument("--questions", type=int, default=64)
    s.add_argument("--samples", type=int, default=10)
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument("--max-new-tokens", type=int, default=50)
    t = sub.add_parser("steer")
    t.add_argument("--model", default="qwen2.5-coder-1.5b-instruct")
    t.add_argument("--items", type=int, default=24)
    t.add_argument("--alphas", type=float, nargs="+", default=[0.0, 1.0, 2.0, 3.0])
    t.add_argument("--sets", type=int, default=3)
    t.add_argument("--neurons", type=int, default=45)
    t.add_argument("--batch-size", type=int, default=256)
    t.add_argument("--max-new-tokens", type=int, default=48)
    m = sub.add_parser("monitor")
    m.add_argument("--model", default="qwen2.5-coder-1.5b-instruct")
    m.add_argument("--answers", type=int, default=48)
    m.add_argument("--batch-size", type=int, default=48)
    m.add_argument("--max-new-tokens", type=int, default=80)
    u = sub.add_parser("tune")
    u.add_argument("--model", default="qwen2.5-coder-1.5b-instruct")
    u.add_argument("--steps", type=int, default=6)
    u.add_argument("--val-items", type=int, default=48)
    u.add_argument("--eval-batch-size", type=int, default=8)
    args = ap.parse_args(argv)
    if args.what == "cett":
        res = run_cett(args.model, args.examples, args.batch_size)
    elif args.what == "steer":
        res = run_steer(args.model, args.items, tuple(args.alphas), args.sets, args.neurons, batch_size=args.batch_size,
                        max_new_tokens=args.max_new_tokens)
    elif args.what == "tune":
        res = run_tune(args.model, steps=args.steps, val_items=args.val_items,
                       eval_batch_size=args.eval_batch_size)
    elif args.what == "monitor":
        res = run_monitor(args.model, args.answers, args.batch_size, args.max_new_tokens)
    else:
        res = run_sample(args.model, args.questions, args.samples, args.batch_size, args.max_new_tokens)
    out = paths.project_root() / "results" / "bench" / f"{args.what}-{args.model.replace('/', '_')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
