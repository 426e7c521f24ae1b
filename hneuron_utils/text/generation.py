"""Prompts and batched generation: chat templates, left padding, stopping at end-of-turn.

Two generators share one interface:

- :func:`generate` — Hugging Face ``generate`` per batch (the plain, obvious way; kept as a reference);
- :func:`sample_many` — our decoding loop, used by the notebooks: the prompt prefix shared by every
  prompt (the chat template's system turn) is run once and its KV cache reused; each prompt is prefilled
  once and its cache copied for its K samples; finished sequences leave the batch at once; and every
  sample draws its random numbers from its own generator seeded by (seed, prompt key, sample index, step),
  so a sample does not depend on the batch it ran in, and a resumed run reproduces it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch

PAPER_SUFFIX = " Respond with the answer only, without any explanation."


def chat_prompt(tokenizer: Any, user: str, system: str | None = None) -> str:
    """Render one user turn with the model's chat template (its default system prompt unless given)."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("This tokenizer has no chat template (a base model?): use a plain-text prompt instead")
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def qa_prompt(tokenizer: Any, question: str, suffix: str = PAPER_SUFFIX, system: str | None = None) -> str:
    """The paper's TriviaQA prompt: the question plus the answer-only instruction, chat-templated (with
    ``system`` as the system turn if given, else the template's default)."""
    return chat_prompt(tokenizer, question.strip() + suffix, system)


PROMPT_STYLES = ("chat", "base")
BASE_SUFFIX = "\nAnswer:"


def question_prompt(tokenizer: Any, question: str, style: str = "chat", suffix: str = PAPER_SUFFIX,
                    system: str | None = None) -> str:
    """A question's prompt in one of :data:`PROMPT_STYLES`: ``chat`` = :func:`qa_prompt` (the paper's
    instruct-model prompt); ``base`` = the paper's base-model prompt, the question followed by
    ``"\nAnswer:"`` as plain text (the tokenizer adds its own special tokens, e.g. Gemma's ``<bos>``;
    generate with ``templated=False, stop_at_newline=True``). ``system``: a system turn for the chat style
    (notebook 04's abstention-permitting NonExist prompt); a base prompt has none."""
    if style == "chat":
        return qa_prompt(tokenizer, question, suffix, system)
    if system:
        raise ValueError("a system prompt needs the chat style; a base-model prompt has no system turn")
    if style == "base":
        return question.strip() + BASE_SUFFIX
    raise ValueError(f"prompt style must be one of {PROMPT_STYLES}, got {style!r}")


def encode(tokenizer: Any, texts: Sequence[str], templated: bool = True) -> dict[str, torch.Tensor]:
    """Tokenise a batch with left padding. A rendered chat template already holds its special tokens."""
    tokenizer.padding_side = "left"
    return tokenizer(list(texts), return_tensors="pt", padding=True, add_special_tokens=not templated)


@dataclass(frozen=True)
class Sampling:
    """Decoding settings (the paper: K=10 samples, temperature 1.0, top_k 50, top_p 0.9, 50 new tokens)."""

    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 0.9
    max_new_tokens: int = 50

    def kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}
        if self.do_sample:
            kw.update(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p)
        else:
            kw.update(temperature=None, top_k=None, top_p=None)
        return kw


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (sorted ascending), to cut padding."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


@torch.inference_mode()
def generate(loaded: Any, prompts: Sequence[str], sampling: Sampling = Sampling(), batch_size: int = 16,
             seed: int | None = None, *, templated: bool = True, progress: bool = True) -> list[str]:
    """Generate one completion per prompt, batched (sorted by length to cut padding), in input order.

    Generation stops at any end-of-turn token; the returned text excludes special tokens and is stripped.
    """
    from hneuron_utils.progress import bar

    tok, model = loaded.tokenizer, loaded.hf
    stop = loaded.stop_token_ids()
    out: list[str] = [""] * len(prompts)
    if seed is not None:
        torch.manual_seed(seed)
    batches = length_batches([len(p) for p in prompts], batch_size)
    for idx in bar(batches, show=progress and len(batches) >= 2, desc="generate", mininterval=5.0):
        enc = encode(tok, [prompts[i] for i in idx], templated=templated).to(loaded.device)
        ids = model.generate(**enc, **sampling.kwargs(), eos_token_id=stop, pad_token_id=tok.pad_token_id)
        new = ids[:, enc["input_ids"].shape[1]:]
        for j, i in enumerate(idx):
            out[i] = tok.decode(new[j], skip_special_tokens=True).strip()
    return out


# --------------------------------------------------------------------------------------------------
# Our decoding loop
# --------------------------------------------------------------------------------------------------

@dataclass
class Sample:
    """One generated sequence: the text (special tokens removed, stripped), its new token ids, and
    whether it stopped at an end-of-turn token (False = cut by max_new_tokens)."""

    text: str
    token_ids: list[int] = field(default_factory=list)
    stopped: bool = True


def sample_seed(seed: int, key: str, k: int, step: int) -> int:
    """The seed of sample ``k`` of prompt ``key`` at decoding ``step`` (64-bit, from SHA-256)."""
    h = hashlib.sha256(f"{seed}|{key}|{k}|{step}".encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def filter_logits(logits: torch.Tensor, sampling: Sampling) -> tuple[torch.Tensor, torch.Tensor]:
    """Temperature, then top-k, then top-p (nucleus), as Hugging Face's warpers do.

    Returns (probs [B, k], token ids [B, k]) of the kept candidates, renormalised, sorted by
    descending probability; filtered-out candidates have probability 0.
    """
    x = logits.float() / sampling.temperature
    k = min(sampling.top_k, x.shape[-1]) if sampling.top_k and sampling.top_k > 0 else x.shape[-1]
    vals, ids = torch.topk(x, k, dim=-1)  # sorted descending
    probs = torch.softmax(vals, dim=-1)
    if sampling.top_p < 1.0:
        before = probs.cumsum(-1) - probs  # mass strictly before each candidate
        keep = before < sampling.top_p
        keep[:, 0] = True
        probs = torch.where(keep, probs, torch.zeros_like(probs))
        probs = probs / probs.sum(-1, keepdim=True)
    return probs, ids


def _draw(probs: torch.Tensor, ids: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
    """Inverse-CDF draw, one uniform per row from that row's own generator."""
    g = torch.Generator()
    u = torch.empty(len(seeds))
    for r, s in enumerate(seeds):
        g.manual_seed(s)
        u[r] = torch.rand((), generator=g)
    cdf = probs.cumsum(-1)
    pick = torch.searchsorted(cdf, (u.to(cdf.device) * cdf[:, -1])[:, None].contiguous()).clamp(max=probs.shape[1] - 1)
    return ids.gather(1, pick).squeeze(1)


def _common_prefix(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix shared by every sequence, leaving ≥1 token in each."""
    n = min(len(s) for s in seqs) - 1
    first = seqs[0]
    for s in seqs[1:]:
        m = 0
        while m < n and s[m] == first[m]:
            m += 1
        n = m
    return max(n, 0)


def _expand_cache(model: Any, prefix: list[tuple[torch.Tensor, torch.Tensor]], rows: int,
                  groups: torch.Tensor | None = None) -> Any:
    """A fresh DynamicCache holding the shared prefix's keys/values for ``rows`` sequences; with ``groups``
    (one index per row into the prefix's batch: a prefix per group of rows) row r gets prefix ``groups[r]``."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    for i, (k, v) in enumerate(prefix):
        if groups is None:
            cache.update(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1), i)
        else:
            g = groups.to(k.device)
            cache.update(k.index_select(0, g), v.index_select(0, g), i)
    return cache


def _prefill(call: Any, model: Any, tails: list[list[int]], prefix: list, P: int, *, pad: int, dev: Any,
             rows: list[int] | None = None, groups: torch.Tensor | None = None) -> tuple:
    """Prefill left-padded prompt tails after the shared prefix; return (cache, mask, positions, logits).
    ``rows`` (the prompts' indices) go to a per-row ``call`` (see :func:`sample_many`); ``groups`` picks each
    row's prefix where there is one per group (:func:`_expand_cache`)."""
    from transformers import DynamicCache

    T = max(len(t) for t in tails)
    ids = torch.full((len(tails), T), pad, dtype=torch.long)
    am = torch.zeros((len(tails), P + T), dtype=torch.long)
    am[:, :P] = 1
    for r, t in enumerate(tails):
        ids[r, T - len(t):] = torch.tensor(t)
        am[r, P + T - len(t):] = 1
    ids, am = ids.to(dev), am.to(dev)
    pos = (am.cumsum(-1) - 1).clamp(min=0)[:, P:]
    cache = _expand_cache(model, prefix, len(tails), groups) if P else DynamicCache(config=model.config)
    extra = {} if rows is None else {"rows": rows}
    res = call(model, input_ids=ids, attention_mask=am, position_ids=pos, past_key_values=cache, use_cache=True,
               logits_to_keep=1, **extra)
    return cache, am, pos[:, -1:], res.logits[:, -1]


def _merge_prefills(model: Any, parts: list[tuple], P: int) -> tuple:
    """One cache for several prefilled sub-batches: shorter ones get zero keys/values (masked out)
    inserted right after the shared prefix, so every row has the same cache length."""
    from transformers import DynamicCache

    if len(parts) == 1:
        return parts[0]
    L = max(p[1].shape[1] for p in parts)

    def widen(x: torch.Tensor, dim: int) -> torch.Tensor:
        gap = L - x.shape[dim]
        if gap == 0:
            return x
        shape = list(x.shape)
        shape[dim] = gap
        return torch.cat([x.narrow(dim, 0, P), x.new_zeros(shape), x.narrow(dim, P, x.shape[dim] - P)], dim)

    cache = DynamicCache(config=model.config)
    for i in range(len(parts[0][0].layers)):
        k = torch.cat([widen(p[0].layers[i].keys, 2) for p in parts])
        v = torch.cat([widen(p[0].layers[i].values, 2) for p in parts])
        cache.update(k, v, i)
    am = torch.cat([widen(p[1], 1) for p in parts])
    return cache, am, torch.cat([p[2] for p in parts]), torch.cat([p[3] for p in parts])


def _first_line(tok: Any, ids: list[int]) -> str | None:
    """The text up to its first newline after some content, if the last token holds a newline; else None.
    Leading whitespace is kept (it is part of what the model generated after the prompt, so teacher
    forcing ``prompt + text`` re-creates the generated tokens); trailing whitespace is dropped."""
    if "\n" not in tok.decode(ids[-1:]):
        return None
    text = tok.decode(ids, skip_special_tokens=True)
    start = len(text) - len(text.lstrip())
    cut = text.find("\n", start)
    return text[:cut].rstrip() if cut > start else None


def _decode(tok: Any, ids: list[int], stopped: bool, keep_lead: bool = False) -> Sample:
    text = tok.decode(ids, skip_special_tokens=True)
    return Sample(text=text.rstrip() if keep_lead else text.strip(), token_ids=ids, stopped=stopped)


def remote_generate(loaded: Any, prompts: Sequence[str], n_samples: int = 1, sampling: Sampling = Sampling(), *,
                    batch_size: int = 64, templated: bool = True, progress: bool = False,
                    step_edit: Any = None) -> list[list[Sample]]:
    """Generation on a model whose traces run elsewhere (``loaded.remote``: NDIF with ``True``, nnsight's
    in-process simulation of it with ``"local"``): one nnsight ``generate`` request per batch. ``step_edit(model)``,
    if given, runs inside the trace at every step (``tracer.iter`` over all ``max_new_tokens`` steps: the
    prompt's prefill and each new token), e.g. an α write on chosen neurons. Every row decodes exactly
    ``max_new_tokens`` tokens (generation is not told the end-of-turn tokens, so the iteration's length is known
    before the request is sent) and is cut here at its first end-of-turn token, where the local loop stops it.

    Greedy decoding gives the local loop's tokens (the tests compare them in float32). Sampled decoding draws
    from the same distribution but not the same draws: the local loop's per-sample seeds cannot be sent, so a
    remote sampled run is not reproducible draw for draw."""
    from hneuron_utils.progress import bar as progress_bar

    if n_samples < 1 or batch_size < 1:
        raise ValueError("n_samples and batch_size must be >= 1")
    if not sampling.do_sample and n_samples > 1:
        raise ValueError("greedy decoding gives identical samples: use n_samples=1 or do_sample=True")
    tok, steps = loaded.tokenizer, int(sampling.max_new_tokens)
    stop = set(loaded.stop_token_ids())
    pad = tok.pad_token_id if tok.pad_token_id is not None else min(stop)
    # eos_token_id None: no row stops early, so the iteration has exactly max_new_tokens steps (min_new_tokens
    # would do that by forbidding the end-of-turn tokens, which changes what the model says)
    gen_kw: dict[str, Any] = {"max_new_tokens": steps, "eos_token_id": None, "do_sample": bool(sampling.do_sample),
                              "pad_token_id": pad, "num_return_sequences": n_samples}
    if sampling.do_sample:
        gen_kw.update(temperature=sampling.temperature, top_k=sampling.top_k, top_p=sampling.top_p)
    else:
        gen_kw.update(temperature=None, top_k=None, top_p=None)
    out: list[list[Sample]] = []
    per_batch = max(1, batch_size // n_samples)
    bar = progress_bar(total=len(prompts), show=progress, desc="remote generate", mininterval=10.0, unit="prompt")
    for start in range(0, len(prompts), per_batch):
        toks = [tok(p, add_special_tokens=not templated)["input_ids"] for p in prompts[start:start + per_batch]]
        width = max(len(t) for t in toks)
        ids = torch.tensor([[pad] * (width - len(t)) + t for t in toks])  # left-padded, as generation needs
        mask = torch.tensor([[0] * (width - len(t)) + [1] * len(t) for t in toks])
        with loaded.lm.generate({"input_ids": ids, "attention_mask": mask}, remote=loaded.remote, **gen_kw) as tracer:
            if step_edit is not None:
                for _ in tracer.iter[0:steps]:
                    step_edit(loaded)
            result = tracer.result.save()
        new = result[:, width:].tolist()
        for i in range(len(toks)):
            row = []
            for k in range(n_samples):
                gen = new[i * n_samples + k]
                cut = next((j for j, t in enumerate(gen) if t in stop), None)
                row.append(_decode(tok, gen[:cut] if cut is not None else gen, cut is not None))
            out.append(row)
        bar.update(len(toks))
    bar.close()
    return out


@torch.inference_mode()
def sample_many(loaded: Any, prompts: Sequence[str], n_samples: int = 1, sampling: Sampling = Sampling(),
                seed: int = 0, *, keys: Sequence[str] | None = None, batch_size: int = 64,
                templated: bool = True, share_prefix: bool = True, progress: bool = True,
                forward: Any = None, first_sample: int = 0, prefill_rows: int = 16,
                stop_at_newline: bool = False, max_prefix: int | None = None) -> list[list[Sample]]:
    """``n_samples`` completions of every prompt (greedy when ``sampling.do_sample`` is False).

    ``batch_size`` counts sequences (prompts × samples) decoded together; prompts are prefilled
    ``prefill_rows`` at a time, grouped by length, to waste little compute on padding. ``keys`` name the prompts
    for seeding (default: the prompt's index). ``forward(model, **kwargs)`` may replace the model call
    (e.g. an intervention); by default the Hugging Face model is called directly. A ``forward`` with
    ``per_row = True`` also receives ``rows=`` the prompt index of each row in the batch (a list), so it
    can treat rows differently (notebook 09's injections); it is not called for the shared prefix, which
    runs through its ``prefix_forward`` if it has one, else unmodified (cap it with ``max_prefix`` tokens
    where a per-row change must reach earlier positions). A per-row ``forward`` with ``prefix_groups``
    (a group id per prompt: prompts whose rows it treats alike) gets the shared prefix computed once per
    group, through itself, so every position is computed as in the prompt's own run (a forward that keeps
    state across calls sees this prefix call first, with one representative prompt per group). ``first_sample``
    offsets the sample indices: samples k0..k0+n-1 of a prompt are the same whether drawn in one call
    or in several. ``stop_at_newline`` ends a sequence at its first newline after some content (the
    paper's base-model protocol; a leading newline is skipped) and cuts the text there, keeping its leading whitespace (so that ``prompt + text`` is what the model
    saw). Returns, for
    each prompt in input order, its list of :class:`Sample`.
    """
    from hneuron_utils.text.serving import ServedModel

    if isinstance(loaded, ServedModel):  # sampling_backend 'openai': one request per sample, to the server
        if forward is not None or stop_at_newline:
            raise ValueError("forward and stop_at_newline need the local model: a served model only samples")
        return loaded.sample(prompts, n_samples, sampling, seed=seed,
                             keys=keys or [str(i) for i in range(len(prompts))], first_sample=first_sample)
    if getattr(loaded, "remote", False):  # NDIF (or its simulation): nnsight's generate, one request per batch
        if forward is not None or stop_at_newline:
            raise ValueError("a model whose traces run remotely generates through remote_generate: a replaced "
                             "forward or stop_at_newline needs the local model (activations_backend 'local')")
        return remote_generate(loaded, prompts, n_samples, sampling, batch_size=batch_size, templated=templated,
                               progress=progress)
    from hneuron_utils.progress import bar as progress_bar

    if n_samples < 1 or batch_size < 1:
        raise ValueError("n_samples and batch_size must be >= 1")
    if not sampling.do_sample and n_samples > 1:
        raise ValueError("greedy decoding gives identical samples: use n_samples=1 or do_sample=True")
    model, tok = loaded.hf, loaded.tokenizer
    dev = next(model.parameters()).device
    call = forward or (lambda m, **kw: m(**kw))
    per_row = bool(getattr(forward, "per_row", False))
    plain = lambda m, **kw: m(**kw)  # noqa: E731
    keys = [str(i) for i in range(len(prompts))] if keys is None else [str(k) for k in keys]
    if len(keys) != len(prompts):
        raise ValueError("keys must name every prompt")
    stop = torch.tensor(sorted(set(loaded.stop_token_ids())), device=dev)
    toks = [tok(p, add_special_tokens=not templated)["input_ids"] for p in prompts]
    if not toks:
        return []
    P = _common_prefix(toks) if share_prefix and len(toks) > 1 else 0
    if max_prefix is not None:
        P = max(0, min(P, max_prefix))
    prefix: list[tuple[torch.Tensor, torch.Tensor]] = []
    group_of = getattr(forward, "prefix_groups", None) if per_row else None
    groups: torch.Tensor | None = None
    if P:
        from transformers import DynamicCache

        pc = DynamicCache(config=model.config)
        head = torch.tensor([toks[0][:P]], device=dev)
        if group_of is not None:  # one prefix per group, each through the per-row forward of one of its prompts
            if len(group_of) != len(toks):
                raise ValueError("prefix_groups must give a group for every prompt")
            reps = list({g: i for i, g in reversed(list(enumerate(group_of)))}.items())  # (group, first prompt)
            slot = {g: k for k, (g, _) in enumerate(reps)}
            groups = torch.tensor([slot[g] for g in group_of], device=dev)
            call(model, input_ids=head.repeat(len(reps), 1), past_key_values=pc, use_cache=True, logits_to_keep=1,
                 rows=[i for _, i in reps])
        else:
            (getattr(forward, "prefix_forward", plain) if per_row else call)(
                model, input_ids=head, past_key_values=pc, use_cache=True, logits_to_keep=1)
        prefix = [(layer.keys, layer.values) for layer in pc.layers]
    out: list[list[Sample | None]] = [[None] * n_samples for _ in prompts]
    per_batch = max(1, batch_size // n_samples)
    queue = sorted(range(len(toks)), key=lambda i: len(toks[i]))  # shortest first
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    bar = progress_bar(total=len(prompts) * n_samples, show=progress, desc="sample" if sampling.do_sample else "greedy",
                       mininterval=10.0, unit="seq")
    state = None  # (cache, mask, last positions [B,1], logits) of the active rows
    rows: list[tuple[int, int]] = []  # (prompt, sample) of each active row, in cache order
    gens: list[list[int]] = []
    while queue or rows:
        # continuous batching: when half the batch has finished, prefill the next prompts (in
        # length-sorted sub-batches) and merge their caches with the running rows' caches
        if queue and len(rows) <= batch_size // 2:
            take = max(1, min(per_batch - len(rows) // n_samples, len(queue)))
            idx, queue = queue[:take], queue[take:]
            parts = [_prefill(call, model, [toks[i][P:] for i in sub], prefix, P, pad=pad, dev=dev, rows=sub if per_row else None,
                              groups=None if groups is None else groups[torch.tensor(sub, device=dev)])
                     for sub in (idx[j:j + prefill_rows] for j in range(0, len(idx), prefill_rows))]
            cache, am, pos, logits = _merge_prefills(model, parts, P)
            if n_samples > 1:  # copy each prompt's cache for its K samples
                cache.batch_repeat_interleave(n_samples)
                am, pos, logits = (x.repeat_interleave(n_samples, 0) for x in (am, pos, logits))
            new = (cache, am, pos, logits)
            state = new if not rows else _merge_prefills(model, [state, new], P)
            rows += [(i, k) for i in idx for k in range(n_samples)]
            gens += [[] for _ in range(len(idx) * n_samples)]
        cache, am, pos, logits = state
        if sampling.do_sample:
            probs, cand = filter_logits(logits, sampling)
            nxt = _draw(probs, cand, [sample_seed(seed, keys[i], first_sample + k, len(g))
                                      for (i, k), g in zip(rows, gens)])
        else:
            nxt = logits.argmax(-1)
        is_stop = torch.isin(nxt, stop).tolist()
        keep = []
        for j, ((i, k), g) in enumerate(zip(rows, gens)):
            if is_stop[j]:
                out[i][k] = _decode(tok, g, True, keep_lead=stop_at_newline)
                continue
            g.append(int(nxt[j]))
            if stop_at_newline and (line := _first_line(tok, g)) is not None:
                out[i][k] = Sample(text=line, token_ids=list(g), stopped=True)
                continue
            if len(g) >= sampling.max_new_tokens:
                out[i][k] = _decode(tok, g, False, keep_lead=stop_at_newline)
            else:
                keep.append(j)
        bar.update(len(rows) - len(keep))
        if not keep:
            rows, gens, state = [], [], None
            continue
        if len(keep) < len(rows):
            kt = torch.tensor(keep, device=dev)
            cache.batch_select_indices(kt)
            nxt, am, pos = nxt[kt], am[kt], pos[kt]
            rows, gens = [rows[j] for j in keep], [gens[j] for j in keep]
        am = torch.cat([am, torch.ones_like(am[:, :1])], 1)
        pos = pos + 1
        extra = {"rows": [i for i, _ in rows]} if per_row else {}
        res = call(model, input_ids=nxt[:, None], attention_mask=am, position_ids=pos, past_key_values=cache,
                   use_cache=True, logits_to_keep=1, **extra)
        state = (cache, am, pos, res.logits[:, -1])
    bar.close()
    return out  # type: ignore[return-value]

def render(tokenizer: Any, messages: Sequence[Mapping[str, str]]) -> str:
    """A conversation rendered with the model's chat template, ready for the assistant's turn."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("This tokenizer has no chat template (a base model?): a chat conversation needs a chat model")
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
