"""Scaling chosen FFN neurons: z_j ← α·z_j at every position (SPEC §2).

:func:`scaled` does it with PyTorch forward pre-hooks on ``down_proj`` — used by notebook 03's
paper selection rule (TriviaQA accuracy with the selected neurons suppressed, α = 0). The hooks are
removed on exit, so no change is left in the model.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch


def by_layer(flat_indices: Sequence[int] | np.ndarray, d_ff: int) -> dict[int, torch.Tensor]:
    """Group flat neuron indices (layer·d_ff + neuron) by layer."""
    out: dict[int, list[int]] = {}
    for f in np.asarray(flat_indices, dtype=np.int64).tolist():
        out.setdefault(f // d_ff, []).append(f % d_ff)
    return {k: torch.tensor(sorted(v)) for k, v in out.items()}


@contextlib.contextmanager
def scaled(loaded: Any, neurons: Mapping[int, torch.Tensor], alpha: float) -> Iterator[None]:
    """Within the block, every forward pass multiplies the given neurons' down_proj input by ``alpha``."""
    hooks = []

    def make(idx: torch.Tensor):
        def pre(mod, args):
            z = args[0].clone()
            z[..., idx.to(z.device)] *= alpha
            return (z, *args[1:])
        return pre

    try:
        for layer, idx in neurons.items():
            if not 0 <= layer < loaded.n_layers:
                raise ValueError(f"layer {layer} out of range (model has {loaded.n_layers})")
            hooks.append(loaded.down_proj_module(layer).register_forward_pre_hook(make(idx)))
        yield
    finally:
        for h in hooks:
            h.remove()


def greedy_accuracy(loaded: Any, records: Sequence[Any], judge: Any, flat_neurons: Sequence[int] | None = None,
                    alpha: float = 0.0, max_new_tokens: int = 16, batch_size: int = 64) -> float:
    """Share of ``records`` (QARecord-like: question, answers) answered correctly by greedy decoding,
    with ``flat_neurons`` scaled by ``alpha`` (None = the unmodified model)."""
    from .generation import Sampling, qa_prompt, sample_many

    prompts = [qa_prompt(loaded.tokenizer, r.question) for r in records]
    ctx = scaled(loaded, by_layer(flat_neurons, loaded.d_ff), alpha) if flat_neurons is not None \
        else contextlib.nullcontext()
    with ctx:
        outs = sample_many(loaded, prompts, 1, Sampling(max_new_tokens=max_new_tokens), batch_size=batch_size,
                           progress=False)
    return float(np.mean([judge.judge(r.question, o[0].text, r.answers).correct for r, o in zip(records, outs)]))
