"""The monitor inside the decoding loop, and the guard built on it.

:func:`monitored_sample` is a decoding loop (static batches, one nnsight trace per step) that reads, at
every generated token, the CETT of the requested neurons, optionally one residual layer, and the token's
log-probability, and that can run a **guard**: at every sentence end a score is computed from what was
read so far; when it reaches τ the guard either abstains (the answer becomes ``abstain_text``) or
discards the sentence and samples it again (up to ``max_resamples`` times, then abstains).

Discarding is exact: the discarded tokens' keys and values stay in the batch's cache but are masked out,
the row's positions restart where the sentence started, and the sentence is drawn again from the logits
saved at its start, with fresh sampling seeds. The first attempt's seeds do not depend on the guard, so a
guard that never fires returns the unguarded samples.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from hneuron_utils.monitor import SENTENCE_END, step_token_spans

ABSTAIN_TEXT = "I don't know."


@dataclass
class Stream:
    """One generated answer as the monitor saw it. ``hcett`` [T, k] (columns in the order of the requested
    neurons), ``resid`` [T, d] or None, ``logprob`` [T] (natural log of each kept token's probability under
    the unmodified softmax), ``ends`` each kept token's end offset in ``text``. ``abstained``: the guard
    stopped the answer (``text`` then holds what was kept before the alarm). ``spent``: tokens generated in
    total, discarded ones included. ``alarms``: the kept-token count at each alarm."""

    text: str
    token_ids: list[int]
    hcett: np.ndarray
    resid: np.ndarray | None
    logprob: np.ndarray
    ends: list[int]
    stopped: bool
    abstained: bool = False
    resamples: int = 0
    spent: int = 0
    alarms: list[int] = field(default_factory=list)
    kept_text: str = ""
    key: str = ""

    def spans(self) -> list[tuple[int, int]]:
        """The answer's sentence steps (token ranges)."""
        return step_token_spans(self.ends, self.text)

    def to_arrays(self) -> dict[str, Any]:
        """A compact, picklable form (float16 residuals)."""
        d = dict(self.__dict__)
        if self.resid is not None:
            d["resid"] = self.resid.astype(np.float16)
        return d

    @classmethod
    def from_arrays(cls, d: dict[str, Any]) -> "Stream":
        d = dict(d)
        if d.get("resid") is not None:
            d["resid"] = np.asarray(d["resid"], dtype=np.float32)
        return cls(**d)


def teacher_forced(tokenizer: Any, prompt: str, stream: Stream) -> Any:
    """The (prompt, answer) pair of a stream as a teacher-forced example whose answer tokens are exactly
    the stream's tokens (no re-tokenisation of the text)."""
    from hneuron_utils.text.tokens import TeacherForced

    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] + list(stream.token_ids)
    ans = torch.zeros(len(ids), dtype=torch.bool)
    ans[len(ids) - len(stream.token_ids):] = True
    return TeacherForced(torch.tensor(ids), ans, len(ids) - len(stream.token_ids))


# A guard's score: (hcett [T, k], resid [T, d] | None, logprob [T], spans) -> score, higher = more alarmed.
ScoreFn = Callable[[np.ndarray, "np.ndarray | None", np.ndarray, list], float]


@dataclass(frozen=True)
class Guard:
    """Abstain or resample when ``score`` reaches ``tau`` at a sentence end."""

    score: ScoreFn
    tau: float
    mode: str = "abstain"
    max_resamples: int = 2

    def __post_init__(self) -> None:
        if self.mode not in ("abstain", "resample"):
            raise ValueError(f"guard mode must be 'abstain' or 'resample', got {self.mode!r}")
        if self.max_resamples < 0:
            raise ValueError("max_resamples must be >= 0")


@dataclass
class _Row:
    prompt: int
    logits: torch.Tensor            # the logits the next token is drawn from
    n_prompt: int                   # prompt tokens (the first answer token's position)
    gen: list[int] = field(default_factory=list)
    cols: list[int] = field(default_factory=list)   # cache column of each generated token
    ends: list[int] = field(default_factory=list)
    text: str = ""
    h: list = field(default_factory=list)
    r: list = field(default_factory=list)
    lp: list = field(default_factory=list)
    start: int = 0                  # first token of the open sentence
    start_logits: torch.Tensor | None = None
    prev_logits: torch.Tensor | None = None
    attempt: int = 0                # sampling attempt (0 = the unguarded draw)
    tries: int = 0                  # resamples of the open sentence
    resamples: int = 0
    spent: int = 0
    alarms: list = field(default_factory=list)


def _closes(text: str, end: int) -> bool:
    return end > 0 and text[end - 1] in SENTENCE_END and (end == len(text) or text[end].isspace())


def _capture_plan(loaded: Any, flat_neurons: Sequence[int]) -> tuple[list[tuple[int, torch.Tensor]], np.ndarray, torch.Tensor]:
    from hneuron_utils.features.cett import down_proj_column_norms

    flat = np.asarray(list(flat_neurons), dtype=np.int64)
    if flat.size and (flat.min() < 0 or flat.max() >= loaded.n_layers * loaded.d_ff):
        raise ValueError("flat_neurons must be indices below n_layers * d_ff")
    F = loaded.d_ff
    layers = sorted({int(f) // F for f in flat})
    plan = [(layer, torch.tensor([int(f) % F for f in flat if int(f) // F == layer], device=loaded.device))
            for layer in layers]
    where = np.concatenate([np.flatnonzero(flat // F == layer) for layer in layers]) if layers else np.zeros(0, int)
    return plan, where, down_proj_column_norms(loaded).to(loaded.device)


@torch.inference_mode()
def monitored_sample(loaded: Any, prompts: Sequence[str], flat_neurons: Sequence[int], sampling: Any,
                     seed: int = 0, *, keys: Sequence[str] | None = None, resid_layer: int | None = None,
                     guard: Guard | None = None, batch_size: int = 32, monitor: bool = True,
                     abstain_text: str = ABSTAIN_TEXT, progress: bool = True, eps: float = 1e-12) -> list[Stream]:
    """One answer per (chat-templated) prompt, with the monitor reading every generated token.

    ``monitor=False`` runs the same loop with plain model calls and reads nothing (the overhead
    baseline); a guard needs the monitor. Sampling follows ``sampling`` (greedy when ``do_sample`` is
    False) with per-(prompt, attempt, step) seeds."""
    from hneuron_utils.progress import bar as progress_bar

    from hneuron_utils.text.generation import filter_logits, _draw, sample_seed

    if guard is not None and not monitor:
        raise ValueError("a guard reads the monitor: monitor must be True")
    if resid_layer is not None and not -loaded.n_layers <= resid_layer < loaded.n_layers:
        raise ValueError(f"resid_layer {resid_layer} out of range (model has {loaded.n_layers} layers)")
    if resid_layer is not None:
        resid_layer %= loaded.n_layers
    tok, model = loaded.tokenizer, loaded.hf
    dev = loaded.device
    keys = [str(i) for i in range(len(prompts))] if keys is None else [str(k) for k in keys]
    if len(keys) != len(prompts):
        raise ValueError("keys must name every prompt")
    plan_list, where, norms = _capture_plan(loaded, flat_neurons)
    plan = dict(plan_list)
    k = len(where)
    stop = set(loaded.stop_token_ids())
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    toks = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    out: list[Stream | None] = [None] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(toks[i]))
    bar = progress_bar(total=len(prompts), show=progress, desc="monitored" if monitor else "plain",
               mininterval=10.0, unit="answer")

    def step(ids: torch.Tensor, am: torch.Tensor, pos: torch.Tensor, cache: Any) -> tuple:
        kw = dict(past_key_values=cache, use_cache=True, logits_to_keep=1)
        if not monitor:
            return model(input_ids=ids, attention_mask=am, position_ids=pos, **kw).logits[:, -1], None, None
        saved, res = [], []
        with loaded.lm.trace({"input_ids": ids, "attention_mask": am, "position_ids": pos}, **kw):
            for layer in sorted(set(plan) | ({resid_layer} if resid_layer is not None else set())):  # model order
                if layer in plan:
                    idx = plan[layer]
                    z = loaded.down_proj(layer).input[:, -1]
                    hn = loaded.down_proj(layer).output[:, -1].float().norm(dim=-1, keepdim=True).clamp_min(eps)
                    saved.append((z[:, idx].float().abs() * norms[layer, idx] / hn).save())
                if layer == resid_layer:
                    o = loaded.layer(resid_layer).output
                    o = o[0] if isinstance(o, tuple) else o
                    res.append(o[:, -1].float().save())
            logits = loaded.lm.output.logits[:, -1].save()
        h = torch.cat([s.cpu() for s in saved], -1) if saved else torch.zeros(len(ids), 0)
        hh = torch.empty_like(h)
        hh[:, where] = h
        return logits, hh.numpy(), (res[0].cpu().numpy() if res else None)

    def finish(row: _Row, stopped: bool, abstained: bool = False) -> None:
        out[row.prompt] = Stream(
            text=abstain_text if abstained else row.text, token_ids=list(row.gen),
            hcett=np.asarray(row.h, dtype=np.float32).reshape(len(row.gen), k if monitor else 0),
            resid=(np.asarray(row.r, dtype=np.float32) if resid_layer is not None else None),
            logprob=np.asarray(row.lp, dtype=np.float64), ends=list(row.ends), stopped=stopped,
            abstained=abstained, resamples=row.resamples, spent=row.spent, alarms=list(row.alarms),
            kept_text=row.text, key=keys[row.prompt])
        bar.update(1)

    def alarmed(row: _Row, n_tokens: int, text: str) -> bool:
        if guard is None:
            return False
        spans = step_token_spans(row.ends[:n_tokens], text)
        r = np.asarray(row.r[:n_tokens], dtype=np.float32) if resid_layer is not None else None
        s = guard.score(np.asarray(row.h[:n_tokens], dtype=np.float32), r, np.asarray(row.lp[:n_tokens]), spans)
        return bool(s >= guard.tau)

    def rollback(row: _Row, am: torch.Tensor, j: int) -> bool:
        """Discard the open sentence (tokens row.start..). True if the row may resample, else abstain."""
        row.alarms.append(len(row.gen))
        resample = guard.mode == "resample" and row.tries < guard.max_resamples
        if resample:
            am[j, row.cols[row.start:]] = 0  # masked out of the cache before its columns are forgotten
        for name in ("gen", "cols", "h", "r", "lp", "ends"):
            setattr(row, name, getattr(row, name)[:row.start])
        row.text = tok.decode(row.gen, skip_special_tokens=True)
        if resample:
            row.logits = row.start_logits
            row.tries += 1
            row.resamples += 1
            row.attempt += 1
        return resample

    for b0 in range(0, len(order), batch_size):
        idx = order[b0:b0 + batch_size]
        from transformers import DynamicCache

        T = max(len(toks[i]) for i in idx)
        ids = torch.full((len(idx), T), pad, dtype=torch.long)
        am = torch.zeros((len(idx), T), dtype=torch.long)
        for j, i in enumerate(idx):
            ids[j, T - len(toks[i]):] = torch.tensor(toks[i])
            am[j, T - len(toks[i]):] = 1
        ids, am = ids.to(dev), am.to(dev)
        pos = (am.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=model.config)
        logits = model(input_ids=ids, attention_mask=am, position_ids=pos, past_key_values=cache, use_cache=True,
                       logits_to_keep=1).logits[:, -1]
        rows = [_Row(prompt=i, logits=logits[j], n_prompt=len(toks[i])) for j, i in enumerate(idx)]
        for row in rows:
            row.start_logits = row.logits
        while rows:
            # 1. choose each row's next token (or finish the row)
            keep, nxt = [], []
            for j, row in enumerate(rows):
                while True:
                    if len(row.gen) >= sampling.max_new_tokens:
                        tok_id = None
                    else:
                        lg = row.logits.float()
                        if sampling.do_sample:
                            probs, cand = filter_logits(lg[None], sampling)
                            s = sample_seed(seed, keys[row.prompt], row.attempt, len(row.gen))
                            tok_id = int(_draw(probs, cand, [s])[0])
                        else:
                            tok_id = int(lg.argmax())
                        row.spent += 1
                        if tok_id in stop:
                            tok_id = None
                    if tok_id is not None:
                        break
                    # the answer ends here: the open sentence (if any) is a step to check
                    ended_by_stop = len(row.gen) < sampling.max_new_tokens
                    if len(row.gen) > row.start and alarmed(row, len(row.gen), row.text):
                        if rollback(row, am, j):
                            continue
                        finish(row, ended_by_stop, abstained=True)
                    else:
                        finish(row, ended_by_stop)
                    break
                if tok_id is None:
                    continue
                row.lp.append(float(torch.log_softmax(row.logits.float(), -1)[tok_id]))
                row.prev_logits = row.logits
                row.gen.append(tok_id)
                row.text = tok.decode(row.gen, skip_special_tokens=True)
                row.ends.append(len(row.text))
                keep.append(j)
                nxt.append(tok_id)
            if not keep:
                break
            if len(keep) < len(rows):
                kt = torch.tensor(keep, device=dev)
                cache.batch_select_indices(kt)
                am, pos = am[kt], pos[kt]
                rows = [rows[j] for j in keep]
            col = am.shape[1]
            am = torch.cat([am, torch.ones_like(am[:, :1])], 1)
            for row in rows:
                row.cols.append(col)
            pos = torch.tensor([[row.n_prompt + len(row.gen) - 1] for row in rows], device=dev)
            # 2. feed them, reading the monitor
            logits, h, r = step(torch.tensor(nxt, device=dev)[:, None], am, pos, cache)
            for j, row in enumerate(rows):
                row.logits = logits[j]
                if monitor:
                    row.h.append(h[j])
                    if r is not None:
                        row.r.append(r[j])
                # 3. did the token before the one just fed close a sentence? then check it
                n = len(row.gen) - 1
                if n >= 1 and n > row.start and _closes(row.text, row.ends[n - 1]):
                    if alarmed(row, n, row.text[:row.ends[n - 1]]):
                        if not rollback(row, am, j):
                            row.logits = None  # abstain: finished below
                        continue
                    row.start, row.start_logits, row.tries = n, row.prev_logits, 0
            done = [row for row in rows if row.logits is None]
            for row in done:
                finish(row, True, abstained=True)
            if done:
                keep = [j for j, row in enumerate(rows) if row.logits is not None]
                if not keep:
                    break
                kt = torch.tensor(keep, device=dev)
                cache.batch_select_indices(kt)
                am = am[kt]
                rows = [rows[j] for j in keep]
    bar.close()
    return out  # type: ignore[return-value]


def timed_decoding(loaded: Any, prompts: Sequence[str], flat_neurons: Sequence[int], sampling: Any,
                   batch_size: int, *, resid_layer: int | None = None) -> dict[str, float]:
    """Seconds and tokens of the same greedy answers decoded with and without the monitor (the overhead).

    After a short warm-up of both paths, the passes run in the order plain, monitored, monitored, plain
    (an ABBA design: a slow drift of the machine's speed cancels), and the overhead is the monitored
    total over the plain total minus 1; ``overhead_first``/``overhead_second`` are the two pairs' own
    ratios (their spread shows the measurement's noise)."""
    for on in (False, True):
        monitored_sample(loaded, prompts[:2], flat_neurons, type(sampling)(max_new_tokens=2), batch_size=2,
                         monitor=on, progress=False)
    secs: dict[str, list[float]] = {"plain": [], "monitored": []}
    tokens: dict[str, int] = {}
    for name in ("plain", "monitored", "monitored", "plain"):
        on = name == "monitored"
        t = time.perf_counter()
        streams = monitored_sample(loaded, prompts, flat_neurons, sampling, batch_size=batch_size, monitor=on,
                                   resid_layer=resid_layer if on else None, progress=False)
        secs[name].append(time.perf_counter() - t)
        tokens[name] = sum(len(s.token_ids) for s in streams)
    res = {f"{k}_seconds": sum(v) / len(v) for k, v in secs.items()}
    res.update({f"{k}_tokens": float(v) for k, v in tokens.items()})
    res["overhead"] = sum(secs["monitored"]) / sum(secs["plain"]) - 1.0
    res["overhead_first"] = secs["monitored"][0] / secs["plain"][0] - 1.0
    res["overhead_second"] = secs["monitored"][1] / secs["plain"][1] - 1.0
    return res
