"""A streaming hallucination monitor on the H-neurons (towards notebook 07): the H-neurons' CETT at every
answer token, their running mean over the answer so far, and notebook 03's H-neuron classifier applied
to it after each token.

The model is causal, so an answer token's activations depend only on the tokens up to it: reading them
from one teacher-forced pass over (prompt, answer) gives exactly the numbers a monitor inside the
decoding loop would see at each step. The score after the answer's last token equals notebook 03's
score for the whole answer (tested)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch


@torch.no_grad()
def token_cett(loaded: Any, examples: Sequence[Any], flat_neurons: Sequence[int], batch_size: int = 8,
               eps: float = 1e-12) -> list[torch.Tensor]:
    """Per teacher-forced example, the CETT of ``flat_neurons`` (layer·d_ff + neuron) at each answer token:
    float32 [n_answer_tokens, k], columns in the order of ``flat_neurons``. One nnsight trace per batch
    (left-padded, mask-derived positions), reading only the layers that hold a requested neuron."""
    from hneuron_utils.features.cett import _pad_left, down_proj_column_norms
    from hneuron_utils.text.generation import length_batches

    flat = np.asarray(list(flat_neurons), dtype=np.int64)
    if flat.size == 0 or flat.min() < 0 or flat.max() >= loaded.n_layers * loaded.d_ff:
        raise ValueError("flat_neurons must be a non-empty set of indices below n_layers * d_ff")
    F = loaded.d_ff
    layers = sorted({int(f) // F for f in flat})
    norms = down_proj_column_norms(loaded).to(loaded.device)
    order = {layer: torch.tensor([int(f) % F for f in flat if int(f) // F == layer], device=loaded.device)
             for layer in layers}
    where = np.concatenate([np.flatnonzero(flat // F == layer) for layer in layers])  # output column of each
    out: list[torch.Tensor] = [torch.zeros(0)] * len(examples)
    pad = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
    for idx in length_batches([len(ex.input_ids) for ex in examples], batch_size):
        ids = _pad_left([examples[i].input_ids for i in idx], pad).to(loaded.device)
        am = _pad_left([torch.ones_like(examples[i].input_ids) for i in idx], 0).to(loaded.device)
        pos = (am.cumsum(-1) - 1).clamp(min=0)
        saved = []
        with loaded.lm.trace({"input_ids": ids, "attention_mask": am, "position_ids": pos}, logits_to_keep=1):
            for layer in layers:
                z = loaded.down_proj(layer).input
                hn = loaded.down_proj(layer).output.float().norm(dim=-1, keepdim=True).clamp_min(eps)
                saved.append((z[..., order[layer]].float().abs() * norms[layer, order[layer]] / hn).save())
        per = torch.cat([s.cpu() if isinstance(s, torch.Tensor) else s.value.cpu() for s in saved], -1)  # [B, T, k]
        ans = _pad_left([examples[i].answer for i in idx], False).bool()
        for j, i in enumerate(idx):
            got = torch.empty(int(ans[j].sum()), len(flat))
            got[:, where] = per[j][ans[j]]
            out[i] = got
    return out


def running_mean(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """Row t = the mean of rows 0..t: the H-neurons' answer-so-far features after each token."""
    x = np.asarray(x, dtype=np.float64)
    return np.cumsum(x, 0) / np.arange(1, len(x) + 1)[:, None]


def stream_scores(clf: Any, per_token: Sequence[Any]) -> list[np.ndarray]:
    """P(hallucinated) after each answer token: notebook 03's H-neuron classifier (a
    :class:`~hneuron_utils.probes.probe.SubsetClassifier`) on the running mean of the per-token CETT of
    its own columns (``per_token`` from :func:`token_cett` with ``flat_neurons = clf.columns``)."""
    out = []
    for x in per_token:
        if np.shape(x)[1] != len(clf.columns):
            raise ValueError(f"per-token features have {np.shape(x)[1]} columns; the classifier reads {len(clf.columns)}")
        Z = (running_mean(x) - clf.mean) / clf.std
        out.append(clf.model.predict_proba(Z)[:, 1])
    return out
