"""Computing the lower decoder layers once when only the upper ones change.

When every variant of a model differs only in decoder layers ``k`` and above — a tuning of the last layers'
MLPs, or a write into layer ``k`` — the residual stream *entering* layer ``k`` is the same for all of them,
for the same batch. :func:`residual_entering` computes it once (running only layers below ``k``), and inside
:func:`starting_at` a forward pass skips layers ``0 .. k-1`` and feeds that tensor into layer ``k``.

For the same batch (token ids, attention mask, positions) the result equals the full forward pass bit for
bit: the same kernels see the same inputs. A different batch composition is a different computation in
bfloat16 (padding and kernels change the rounding), so a residual is only ever reused for the batch it was
computed from; :func:`starting_at` checks the shape.

Used by notebook 08's validation scorer and tuning (only the last layers' MLPs are trained there). Requires
decoder layers that return their hidden states as a tensor (transformers ≥ 4.54); older versions raise.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Any, Iterator

import torch

from hneuron_utils.models.loading import ModelError, find_layers_path


class _Enough(Exception):
    """Raised by the capturing hook: nothing above the layer is needed."""


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The model's decoder layers: the module list at :func:`find_layers_path`, or the ``layers`` of a bare
    decoder stack (a causal LM's ``.model``)."""
    if isinstance(getattr(model, "layers", None), torch.nn.ModuleList):
        return model.layers
    return functools.reduce(getattr, find_layers_path(model).split("."), model)


def _check_layer(model: torch.nn.Module, layer: int) -> torch.nn.ModuleList:
    layers = decoder_layers(model)
    if not 0 < layer < len(layers):
        raise ValueError(f"layer must lie in [1, {len(layers) - 1}] (the model has {len(layers)} layers), got {layer}")
    return layers


def residual_entering(model: torch.nn.Module, layer: int, **inputs: Any) -> torch.Tensor:
    """The residual stream entering decoder layer ``layer`` for one batch ``inputs`` (the model's keyword
    arguments: ``input_ids``, ``attention_mask``, ``position_ids``), shape [batch, tokens, d_model]. Only the
    layers below ``layer`` run; no gradient is recorded."""
    layers = _check_layer(model, layer)
    got: dict[str, torch.Tensor] = {}

    def capture(module: Any, args: tuple, kwargs: dict) -> None:
        got["h"] = (args[0] if args else kwargs["hidden_states"]).detach()
        raise _Enough

    handle = layers[layer].register_forward_pre_hook(capture, with_kwargs=True)
    try:
        with torch.no_grad():
            model(**inputs)
    except _Enough:
        pass
    finally:
        handle.remove()
    return got["h"]


def _skip(hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    return hidden_states


@contextmanager
def starting_at(model: torch.nn.Module, layer: int, residual: torch.Tensor) -> Iterator[None]:
    """Inside, a forward pass of ``model`` skips decoder layers ``0 .. layer-1`` and feeds ``residual`` (from
    :func:`residual_entering` on the same batch) into layer ``layer``; gradients flow from there up."""
    layers = _check_layer(model, layer)

    def feed(module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        incoming = args[0] if args else kwargs["hidden_states"]
        if incoming.shape != residual.shape:
            raise ValueError(f"the stored residual has shape {tuple(residual.shape)} but this batch's is "
                             f"{tuple(incoming.shape)}: a residual is reused only for the batch it was computed from")
        r = residual.to(incoming.dtype)
        return ((r,) + args[1:], kwargs) if args else (args, {**kwargs, "hidden_states": r})

    def check(module: Any, args: tuple, output: Any) -> None:
        if not isinstance(output, torch.Tensor):
            raise ModelError(f"{type(module).__name__} returns {type(output).__name__}, not a tensor: skipping the "
                             "lower layers needs decoder layers that return their hidden states (transformers >= 4.54)")

    skipped = list(layers[:layer])
    handles = [layers[layer].register_forward_pre_hook(feed, with_kwargs=True),
               layers[layer].register_forward_hook(check)]
    for m in skipped:
        m.forward = _skip  # an instance attribute: nn.Module.__call__ finds it before the class's forward
    try:
        yield
    finally:
        for m in skipped:
            del m.forward
        for h in handles:
            h.remove()


def frozen_below(model: torch.nn.Module, layer: int) -> bool:
    """Whether nothing that feeds decoder layer ``layer`` can change in training: no parameter of the input
    embeddings (tied to the output head or not) or of ``layers[:layer]`` requires a gradient."""
    return not any(p.requires_grad for p in _lower_parameters(model, layer))


def _lower_parameters(model: torch.nn.Module, layer: int) -> list[torch.Tensor]:
    """The input embeddings' and ``layers[:layer]``'s parameters: everything the residual entering ``layer``
    depends on besides the batch."""
    layers = _check_layer(model, layer)
    return [*model.get_input_embeddings().parameters(), *(p for m in layers[:layer] for p in m.parameters())]


def _main_tensor(out: Any) -> torch.Tensor:
    for name in ("logits", "last_hidden_state"):
        if getattr(out, name, None) is not None:
            return getattr(out, name)
    return out


class ResidualStore:
    """Forward passes that compute the layers below ``layer`` once per distinct batch.

    ``store(model, **inputs)`` returns ``model(**inputs)``; the residual entering ``layer`` is kept (in memory,
    up to ``max_bytes``, oldest dropped first) under a key made of the batch's tensors, the model's source
    (``config._name_or_path``), the autocast state and a checksum of the lower layers' weights, so a changed
    batch, model or lower weight never reuses a stale residual. The first call of each store is checked
    against the full forward pass.

    ``require_frozen`` (for a model in training): refuse a model whose lower layers could train
    (:func:`frozen_below`). ``across_models``: leave the source out of the key, so models saved from one
    tuning of the upper layers share the residuals (the checksum of the lower weights still tells them
    apart from any other model)."""

    def __init__(self, layer: int, *, max_bytes: int = 2 << 30, require_frozen: bool = True,
                 across_models: bool = False):
        self.layer, self.max_bytes = int(layer), int(max_bytes)
        self.require_frozen, self.across_models = require_frozen, across_models
        self._kept: dict[str, torch.Tensor] = {}
        self.computed = self.reused = 0
        self._checked = False

    def _key(self, model: torch.nn.Module, inputs: dict[str, Any]) -> str:
        import hashlib

        h = hashlib.sha256()
        h.update(str(type(model).__name__ if self.across_models
                     else getattr(model.config, "_name_or_path", type(model).__name__)).encode())
        h.update(str((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"), self.layer)).encode())
        with torch.no_grad():  # a cheap checksum of the lower weights (a strided sample of every tensor)
            for p in _lower_parameters(model, self.layer):
                flat = p.detach().reshape(-1)
                h.update(f"{p.dtype}:{float(flat[:: max(1, flat.numel() // 4096)].double().sum())!r}".encode())
        for k in sorted(inputs):
            v = inputs[k]
            if isinstance(v, torch.Tensor):
                h.update(k.encode() + str(tuple(v.shape)).encode() + v.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def __call__(self, model: torch.nn.Module, **inputs: Any) -> Any:
        if self.require_frozen and not frozen_below(model, self.layer):
            raise ValueError(f"a parameter below layer {self.layer} requires a gradient: its residual could change")
        key = self._key(model, inputs)
        residual = self._kept.get(key)
        if residual is None:
            residual = residual_entering(model, self.layer, **inputs)
            self._kept[key] = residual
            self.computed += 1
            while len(self._kept) > 1 and sum(t.numel() * t.element_size() for t in self._kept.values()) > self.max_bytes:
                del self._kept[next(iter(self._kept))]
        else:
            self.reused += 1
        with starting_at(model, self.layer, residual):
            out = model(**inputs)
        if not self._checked:  # once per store: the fast path must equal the full forward pass on this batch
            self._checked = True
            with torch.no_grad():
                full = model(**inputs)
            a, b = _main_tensor(out), _main_tensor(full)
            if not torch.allclose(a.detach().float(), b.float(), rtol=1e-4, atol=1e-5):
                raise RuntimeError(f"reusing the residual entering layer {self.layer} changed the output by up to "
                                   f"{float((a.detach().float() - b.float()).abs().max()):.3g}")
        return out
