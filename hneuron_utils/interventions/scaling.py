"""Scaling chosen FFN neurons: z_j ← α·z_j at every position (the paper's definition).

The notebooks scale through nnsight (:func:`nnsight_forward`, one traced call per decoding step, via
:func:`generate_scaled`). :func:`scaled` does the same with PyTorch forward pre-hooks on ``down_proj``;
the tests use it as an independent reference. Neither leaves a change in the model.
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


def check_layers(loaded: Any, layers: Any) -> None:
    """Stop before any forward pass when a layer index (the keys of a {layer: neurons} plan) is not the model's."""
    for layer in layers:
        if not 0 <= layer < loaded.n_layers:
            raise ValueError(f"layer {layer} out of range (model has {loaded.n_layers})")


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
        check_layers(loaded, neurons)
        for layer, idx in neurons.items():
            hooks.append(loaded.down_proj_module(layer).register_forward_pre_hook(make(idx)))
        yield
    finally:
        for h in hooks:
            h.remove()


def greedy_accuracy(loaded: Any, records: Sequence[Any], judge: Any, flat_neurons: Sequence[int] | None = None,
                    alpha: float = 0.0, *, max_new_tokens: int = 16, batch_size: int = 64) -> float:
    """Share of ``records`` (QARecord-like: question, answers) answered correctly by greedy decoding,
    with ``flat_neurons`` scaled by ``alpha`` (None = the unmodified model)."""
    from hneuron_utils.text.generation import Sampling, qa_prompt

    prompts = [qa_prompt(loaded.tokenizer, r.question) for r in records]
    outs = generate_scaled(loaded, prompts, flat_neurons, alpha, Sampling(max_new_tokens=max_new_tokens),
                           batch_size=batch_size)
    return float(np.mean([judge.judge(r.question, o[0].text, r.answers).correct for r, o in zip(records, outs)]))


def nnsight_forward(loaded: Any, neurons: Mapping[int, torch.Tensor], alpha: float) -> Any:
    """A ``forward`` for :func:`hneuron_utils.text.generation.sample_many` that runs every model call — the
    prompt's prefill and each generated token's step — inside an nnsight trace multiplying the given
    neurons' ``down_proj`` input by ``alpha``. The write happens in the trace, on that call's
    activations only, so nothing is left in the model afterwards.

    Because our decoding loop makes one traced call per step, the intervention reaches every position
    of the prompt and of every generated token (a known nnsight pitfall: an in-place write inside nnsight's own
    ``generate`` without ``tracer.iter`` only reaches the prompt)."""
    check_layers(loaded, neurons)
    plan = [(layer, idx.to(loaded.device)) for layer, idx in sorted(neurons.items())]

    def forward(model: Any, **kw: Any) -> Any:
        inputs = {k: kw.pop(k) for k in ("input_ids", "attention_mask", "position_ids") if k in kw}
        got: dict[str, torch.Tensor] = {}
        with loaded.lm.trace(inputs, **kw):
            for layer, idx in plan:
                z = loaded.down_proj(layer).input
                z[..., idx] = z[..., idx] * alpha
            got["logits"] = loaded.lm.output.logits
        return _Output(got["logits"])

    return forward


class _Output:
    """The one field of a model output that :func:`sample_many` reads."""

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits


def unmodified(flat_neurons: Sequence[int] | None, alpha: float) -> bool:
    """Whether scaling ``flat_neurons`` by ``alpha`` leaves the model as it is (no neurons, or α = 1)."""
    return flat_neurons is None or len(flat_neurons) == 0 or alpha == 1.0


def scaled_forward(loaded: Any, flat_neurons: Sequence[int] | None, alpha: float) -> Any:
    """:func:`nnsight_forward` for flat neuron indices (layer·d_ff + neuron), or None when the scaling
    changes nothing (then callers use the plain model call)."""
    if unmodified(flat_neurons, alpha):
        return None
    return nnsight_forward(loaded, by_layer(flat_neurons, loaded.d_ff), alpha)


def generate_scaled(loaded: Any, prompts: Sequence[str], flat_neurons: Sequence[int] | None, alpha: float,
                    sampling: Any = None, *, n_samples: int = 1, seed: int = 0, keys: Sequence[str] | None = None,
                    batch_size: int = 64, templated: bool = True, progress: bool = False) -> list[list[Any]]:
    """:func:`sample_many` with ``flat_neurons`` (layer·d_ff + neuron) scaled by ``alpha`` through nnsight
    at every step (None, or alpha == 1, = the unmodified model, no trace)."""
    from hneuron_utils.text.generation import Sampling, sample_many

    if getattr(loaded, "remote", False):  # NDIF (or its in-process simulation): nnsight's generate, one request a batch
        from hneuron_utils.text.generation import remote_generate

        return remote_generate(loaded, prompts, n_samples, sampling or Sampling(), batch_size=batch_size,
                               templated=templated, progress=progress,
                               step_edit=remote_step_edit(loaded, flat_neurons, alpha))
    return sample_many(loaded, prompts, n_samples, sampling or Sampling(), seed=seed, keys=keys,
                       batch_size=batch_size, templated=templated, progress=progress,
                       forward=scaled_forward(loaded, flat_neurons, alpha))


def remote_step_edit(loaded: Any, flat_neurons: Sequence[int] | None, alpha: float) -> Any:
    """The α write as a step edit for :func:`hneuron_utils.text.generation.remote_generate`: inside the remote
    trace, at every decoding step, the neurons' ``down_proj`` input is multiplied by ``alpha`` (None when the
    scaling changes nothing)."""
    if unmodified(flat_neurons, alpha):
        return None
    plan = sorted(by_layer(flat_neurons, loaded.d_ff).items())
    check_layers(loaded, dict(plan))

    def edit(model: Any) -> None:
        for layer, idx in plan:
            z = model.down_proj(layer).input
            z[..., idx] = z[..., idx] * alpha

    return edit


def suppression_accuracies(loaded: Any, records: Sequence[Any], judge: Any, neuron_sets: Mapping[float, Sequence[int]],
                           batch_size: int = 64) -> tuple[float, dict[float, float]]:
    """The paper's C rule, its second half: greedy accuracy on ``records`` unmodified, and with each
    neuron set's activations set to zero (α = 0). Empty sets get NaN."""
    base = greedy_accuracy(loaded, records, judge, batch_size=batch_size)
    return base, {c: (greedy_accuracy(loaded, records, judge, list(s), 0.0, batch_size=batch_size) if len(s) else float("nan"))
                  for c, s in neuron_sets.items()}


# --------------------------------------------------------------------------- several conditions in one batch

Condition = tuple  # (flat neuron indices or None, α)


def row_scale_plan(loaded: Any, conditions: Sequence[Condition]) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
    """Per layer: (layer, U = the union of the neurons any condition scales there, M = a [conditions, |U|]
    matrix of scales, 1 where a condition leaves a neuron of U alone). Row r of a batch under condition
    c then multiplies ``z[r, :, U]`` by ``M[c]``: every condition's own set and α, in one call."""
    sets = [by_layer(f, loaded.d_ff) if not unmodified(f, a) else {} for f, a in conditions]
    plan = []
    check_layers(loaded, {l for s in sets for l in s})
    for layer in sorted({l for s in sets for l in s}):
        union = torch.tensor(sorted({int(j) for s in sets for j in s.get(layer, torch.tensor([])).tolist()}))
        where = {int(j): k for k, j in enumerate(union.tolist())}
        scales = torch.ones(len(conditions), len(union))
        for c, (s, (_, alpha)) in enumerate(zip(sets, conditions)):
            for j in s.get(layer, torch.tensor([], dtype=torch.long)).tolist():
                scales[c, where[int(j)]] = float(alpha)
        plan.append((layer, union, scales))
    return plan


def row_scaled_forward(loaded: Any, conditions: Sequence[Condition], row_condition: Sequence[int]) -> Any:
    """A per-row ``forward`` for :func:`hneuron_utils.text.generation.sample_many`: prompt ``p`` is decoded
    under ``conditions[row_condition[p]]`` (its neurons' ``down_proj`` input times its α, at every prefill
    and decoding step, through one nnsight trace per call for the whole batch). The multiplication is the
    same elementwise product as :func:`nnsight_forward` (× 1 for the rows a neuron is not scaled in); the
    tests find each row's tokens equal to its own condition's run (float32; in bfloat16 the batch's
    composition can change a few tokens, as for any batching). Its ``prefix_groups`` (each prompt's condition)
    lets ``sample_many`` compute the prompts' shared prefix (the system turn) once per condition, scaled,
    instead of once per row."""
    if any(not 0 <= c < len(conditions) for c in row_condition):
        raise ValueError("row_condition must index conditions")
    # scales stay float32: z * m is computed in float32 and rounded once on assignment, as z * α is
    plan = [(layer, u.to(loaded.device), m.to(device=loaded.device, dtype=torch.float32))
            for layer, u, m in row_scale_plan(loaded, conditions)]
    cond_of = torch.tensor(list(row_condition), dtype=torch.long)
    dt = loaded.dtype

    def forward(model: Any, rows: Sequence[int], **kw: Any) -> Any:
        if not plan:
            return _Output(model(**kw).logits)
        inputs = {k: kw.pop(k) for k in ("input_ids", "attention_mask", "position_ids") if k in kw}
        c = cond_of[torch.as_tensor(list(rows), dtype=torch.long)].to(loaded.device)
        got: dict[str, torch.Tensor] = {}
        with loaded.lm.trace(inputs, **kw):
            for layer, u, m in plan:
                z = loaded.down_proj(layer).input
                z[..., u] = (z[..., u] * m[c][:, None, :]).to(dt)
            got["logits"] = loaded.lm.output.logits
        return _Output(got["logits"])

    forward.per_row = True  # type: ignore[attr-defined]
    forward.prefix_groups = list(row_condition)  # type: ignore[attr-defined]
    return forward


def generate_conditions(loaded: Any, prompts: Sequence[str], conditions: Sequence[Condition],
                        row_condition: Sequence[int], sampling: Any = None, *, seed: int = 0,
                        keys: Sequence[str] | None = None, batch_size: int = 64,
                        progress: bool = False, share_prefix: bool = True) -> list[list[Any]]:
    """One completion of every prompt, prompt ``p`` under ``conditions[row_condition[p]]``, all in one
    decoding batch (:func:`row_scaled_forward`). ``keys`` seed the sampling per prompt: give a prompt the
    same key under every condition and its samples use the same random numbers as in its own run.
    ``share_prefix``: prefill the prompts' common prefix once per condition (scaled as the condition says).
    A model whose traces run remotely (``loaded.remote``) gets one request per condition instead
    (:func:`generate_scaled`); its sampled draws are not keyed (see
    :func:`~hneuron_utils.text.generation.remote_generate`)."""
    from hneuron_utils.text.generation import Sampling, sample_many

    if len(row_condition) != len(prompts):
        raise ValueError("row_condition must give a condition for every prompt")
    if getattr(loaded, "remote", False):  # remote traces: one generate request per condition (and batch)
        out: list[Any] = [None] * len(prompts)
        for c, (flat_neurons, alpha) in enumerate(conditions):
            rows = [i for i, rc in enumerate(row_condition) if rc == c]
            if rows:
                got = generate_scaled(loaded, [prompts[i] for i in rows], flat_neurons, alpha, sampling,
                                      batch_size=batch_size, progress=progress)
                for i, o in zip(rows, got):
                    out[i] = o
        return out
    fwd = row_scaled_forward(loaded, conditions, row_condition)
    return sample_many(loaded, prompts, 1, sampling or Sampling(), seed=seed, keys=keys, batch_size=batch_size,
                       progress=progress, forward=fwd, share_prefix=share_prefix)
