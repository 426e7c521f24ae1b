"""Concept vectors and their injection into the residual stream (after Lindsey 2025).

A *concept vector* for a word at layer ℓ is the residual stream after decoder layer ℓ, read at the last
token of a fixed chat prompt about the word ("Tell me about {word}."), minus the mean of the same
read over baseline words. An *injection* adds a vector to that layer's output at every position from
the start of the assistant's turn on, through every generated token. Its strength is stated relative
to the layer's residual norm (the median norm at the read position over the baseline prompts), so a
strength of 1 adds a vector as long as a typical residual vector of that layer.

Every row of a decoding batch carries its own injection (layer, vector): :func:`injection_forward`
is a per-row ``forward`` for :func:`hneuron_utils.text.generation.sample_many`, written through
nnsight, so all conditions of a run decode together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from hneuron_utils.cache import digest, stage_dir

CONCEPT_PROMPT = "Tell me about {word}."


def _hidden(out: Any) -> Any:
    """A decoder layer's output hidden states (some versions return a tuple)."""
    return out[0] if isinstance(out, tuple) else out


def depth_layers(n_layers: int, fractions: Sequence[float]) -> list[int]:
    """Decoder layers at the given fractions of depth: round(f · n_layers) − 1, distinct, in order."""
    if not fractions or any(not 0 < f <= 1 for f in fractions):
        raise ValueError(f"depth fractions must lie in (0, 1], got {list(fractions)}")
    layers = [min(n_layers - 1, max(0, int(round(f * n_layers)) - 1)) for f in fractions]
    if len(set(layers)) != len(layers):
        raise ValueError(f"fractions {list(fractions)} give repeated layers {layers} on a {n_layers}-layer model")
    return layers


def assistant_start(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[str, int]:
    """The rendered prompt (ready for the assistant's turn) and the index of its first token of the
    assistant's turn (the generation prompt's first token), checked to be a token boundary."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("this tokenizer has no chat template (a base model?): concept injection needs a chat model")
    before = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    full = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if not full.startswith(before):
        raise ValueError("the chat template's generation prompt does not extend the conversation")
    a = tokenizer(before, add_special_tokens=False)["input_ids"]
    b = tokenizer(full, add_special_tokens=False)["input_ids"]
    if b[:len(a)] != a:
        raise ValueError("the assistant's turn does not start at a token boundary")
    return full, len(a)


@torch.inference_mode()
def last_token_residuals(loaded: Any, prompts: Sequence[str], layers: Sequence[int], batch_size: int = 16) -> np.ndarray:
    """Residual stream after each of ``layers`` at every prompt's last token: [prompts, layers, d_model]
    (float32). Prompts are chat-rendered text, left-padded in batches."""
    from hneuron_utils.text.generation import encode

    out = []
    for b in range(0, len(prompts), batch_size):
        enc = encode(loaded.tokenizer, list(prompts[b:b + batch_size]), templated=True).to(loaded.device)
        saved = []
        with loaded.lm.trace(dict(enc)):
            for layer in sorted(layers):
                saved.append(_hidden(loaded.layer(layer).output)[:, -1].float().save())
        by = dict(zip(sorted(layers), saved))
        out.append(torch.stack([by[layer].cpu() for layer in layers], 1))
    return torch.cat(out).numpy()


@dataclass
class ConceptVectors:
    """Concept vectors and the scale they are injected at, per layer."""

    words: list[str]
    layers: list[int]
    vectors: np.ndarray      # [words, layers, d_model]: word's read minus the baseline mean
    residual_norm: np.ndarray  # [layers]: median residual norm at the read position over baseline prompts

    def unit(self, word: int, layer: int) -> np.ndarray:
        v = self.vectors[word, self.layers.index(layer)]
        return v / max(float(np.linalg.norm(v)), 1e-12)

    def scaled(self, word: int, layer: int, strength: float) -> np.ndarray:
        """The concept's direction at ``layer`` with norm ``strength`` × that layer's residual norm."""
        return self.unit(word, layer) * strength * float(self.residual_norm[self.layers.index(layer)])


def concept_vectors(loaded: Any, words: Sequence[str], baseline: Sequence[str], layers: Sequence[int],
                    batch_size: int = 16) -> ConceptVectors:
    """:class:`ConceptVectors` for ``words`` against the mean over ``baseline`` words (cached on disk,
    keyed by the model, the words, the baseline words, the layers and the prompt)."""
    from hneuron_utils.models import model_key
    from hneuron_utils.text.generation import chat_prompt

    if len(set(words) & set(baseline)):
        raise ValueError(f"concept and baseline words overlap: {sorted(set(words) & set(baseline))}")
    if len(baseline) < 2:
        raise ValueError("need at least two baseline words")
    key = {"stage": "concept_vectors", "model": model_key(loaded), "words": list(words), "baseline": list(baseline),
           "layers": list(layers), "prompt": CONCEPT_PROMPT}
    path = stage_dir("concept_vectors", key) / "vectors.npz"
    if not path.exists():
        render = [chat_prompt(loaded.tokenizer, CONCEPT_PROMPT.format(word=w)) for w in [*words, *baseline]]
        acts = last_token_residuals(loaded, render, layers, batch_size)
        base = acts[len(words):]
        tmp = path.with_name("tmp-" + path.name)
        np.savez(tmp, vectors=acts[:len(words)] - base.mean(0), norm=np.median(np.linalg.norm(base, axis=-1), 0))
        tmp.replace(path)
    z = np.load(path)
    return ConceptVectors(list(words), list(layers), z["vectors"], z["norm"])


def random_direction(d_model: int, seed: int, key: str) -> np.ndarray:
    """A unit vector drawn uniformly on the sphere, seeded by ``seed`` and a row's ``key``."""
    rng = np.random.default_rng(int(digest([seed, key], 12), 16))
    v = rng.standard_normal(d_model)
    return v / np.linalg.norm(v)


def injection_forward(loaded: Any, layers: Sequence[int | None], vectors: Sequence[np.ndarray | None],
                      starts: Sequence[int]) -> Any:
    """A per-row ``forward`` for :func:`~hneuron_utils.text.generation.sample_many`: prompt ``i`` gets
    ``vectors[i]`` added to the output of decoder layer ``layers[i]`` (None = no injection) at every
    position ≥ ``starts[i]`` (its assistant turn's first token) and at every generated token, written
    inside an nnsight trace of that call."""
    n = len(layers)
    if not len(vectors) == len(starts) == n:
        raise ValueError("layers, vectors and starts need one entry per prompt")
    dev = loaded.device
    add: dict[int, torch.Tensor] = {}
    for i, (layer, v) in enumerate(zip(layers, vectors)):
        if layer is None:
            continue
        if not 0 <= layer < loaded.n_layers:
            raise ValueError(f"layer {layer} out of range (model has {loaded.n_layers})")
        if v is None or len(v) != loaded.d_model:
            raise ValueError(f"prompt {i}: an injection needs a vector of length d_model = {loaded.d_model}")
        add.setdefault(layer, torch.zeros(n, loaded.d_model, dtype=torch.float32))[i] = torch.as_tensor(v, dtype=torch.float32)
    add = {k: v.to(dev) for k, v in sorted(add.items())}
    start = torch.as_tensor(list(starts), dtype=torch.long, device=dev)

    def forward(model: Any, rows: list[int], **kw: Any) -> Any:
        from hneuron_utils.interventions.scaling import _Output

        inputs = {k: kw.pop(k) for k in ("input_ids", "attention_mask", "position_ids") if k in kw}
        r = torch.as_tensor(rows, dtype=torch.long, device=dev)
        pos = inputs["position_ids"]
        on = (pos >= start[r][:, None]).to(torch.float32)[..., None]  # [B, T, 1]
        plan = [(layer, on * a[r][:, None, :]) for layer, a in add.items() if bool(a[r].any())]
        got: dict[str, torch.Tensor] = {}
        with loaded.lm.trace(inputs, **kw):
            for layer, delta in plan:
                h = _hidden(loaded.layer(layer).output)
                h[:] = (h.float() + delta).to(h.dtype)
            got["logits"] = loaded.lm.output.logits
        return _Output(got["logits"])

    forward.per_row = True  # type: ignore[attr-defined]
    return forward


def injected_generate(loaded: Any, prompts: Sequence[str], starts: Sequence[int], layers: Sequence[int | None],
                      vectors: Sequence[np.ndarray | None], *, max_new_tokens: int, batch_size: int = 64,
                      progress: bool = True) -> list[Any]:
    """Greedy completions of ``prompts`` (chat-rendered), row i under its own injection; the shared
    prompt prefix is prefilled once, unmodified, and never reaches an injected position."""
    from hneuron_utils.text.generation import Sampling, sample_many

    fwd = injection_forward(loaded, layers, vectors, starts)
    outs = sample_many(loaded, prompts, 1, Sampling(max_new_tokens=max_new_tokens), batch_size=batch_size,
                       progress=progress, forward=fwd, max_prefix=min(starts))
    return [o[0] for o in outs]


def hook_generate(loaded: Any, prompt: str, start: int, layer: int | None, vector: np.ndarray | None,
                  *, max_new_tokens: int) -> list[int]:
    """Reference path for tests: one prompt, greedy, with a plain PyTorch forward hook adding ``vector``
    at positions ≥ ``start`` of decoder layer ``layer``; no cache (the whole sequence is re-run each step)."""
    tok, model = loaded.tokenizer, loaded.hf
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    stop = set(loaded.stop_token_ids())
    layer_mod = None if layer is None else model.get_submodule(loaded.layers_path)[layer]
    v = None if vector is None else torch.as_tensor(vector, dtype=torch.float32)

    def hook(mod, args, out):
        h = _hidden(out)
        h = h.clone()
        h[:, start:] = (h[:, start:].float() + v.to(h.device)).to(h.dtype)
        return (h, *out[1:]) if isinstance(out, tuple) else h

    handle = layer_mod.register_forward_hook(hook) if layer_mod is not None else None
    new: list[int] = []
    try:
        with torch.inference_mode():
            for _ in range(max_new_tokens):
                x = torch.tensor([ids + new], device=loaded.device)
                nxt = int(model(input_ids=x).logits[0, -1].argmax())
                if nxt in stop:
                    break
                new.append(nxt)
    finally:
        if handle is not None:
            handle.remove()
    return new

