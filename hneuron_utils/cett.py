"""CETT: the share of a layer's FFN output norm carried by each neuron (SPEC §2).

CETT_{j,t} = |z_{j,t}| · ‖W_down[:, j]‖₂ / ‖h_t‖₂, with z the input of ``down_proj`` (the gated
product) and h its output. The column norms are constant per model and computed once; the
d × d_ff outer product is never materialised.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def down_proj_column_norms(loaded) -> torch.Tensor:
    """‖W_down[:, j]‖₂ for every layer and neuron, as float32 [n_layers, d_ff]."""
    return torch.stack([loaded.down_proj_module(i).weight.float().norm(dim=0) for i in range(loaded.n_layers)])


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


def _weights(mask: torch.Tensor, hnorm: torch.Tensor) -> torch.Tensor:
    """Per-token weights w[b,t] = mask / (‖h_bt‖ · n_b), so that Σ_t w·|z|·colnorm is the masked CETT mean."""
    n = mask.sum(1, keepdim=True).clamp_min(1)
    return mask / (hnorm * n)


@torch.no_grad()
def extract(loaded, examples: list, batch_size: int = 16, progress: bool = True,
            eps: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean CETT over answer tokens and over all other (non-pad) tokens, for every layer and neuron.

    ``examples`` are :class:`hneuron_utils.tokens.TeacherForced`. One nnsight trace per batch (sorted by
    length, left-padded, mask-derived position ids, logits for the last position only) reads every
    layer's ``down_proj`` input and output and reduces to per-example means inside the trace, so no
    [batch, tokens, d_ff] activation outlives its layer. Returns two float32 tensors [N, n_layers, d_ff].
    """
    from tqdm import tqdm

    from .generation import length_batches

    norms = down_proj_column_norms(loaded).to(loaded.device)
    n, L, F = len(examples), loaded.n_layers, loaded.d_ff
    ans_out = torch.zeros(n, L, F)
    oth_out = torch.zeros(n, L, F)
    batches = length_batches([len(ex.input_ids) for ex in examples], batch_size)
    pad = loaded.tokenizer.pad_token_id
    for idx in tqdm(batches, desc="CETT", disable=not progress, mininterval=10.0):
        ids = _pad_left([examples[i].input_ids for i in idx], pad).to(loaded.device)
        am = _pad_left([torch.ones_like(examples[i].input_ids) for i in idx], 0).to(loaded.device)
        ans = _pad_left([examples[i].answer for i in idx], False).to(loaded.device).float()
        oth = am.float() - ans
        pos = (am.cumsum(-1) - 1).clamp(min=0)
        a_layers: list = []
        o_layers: list = []
        with loaded.lm.trace({"input_ids": ids, "attention_mask": am, "position_ids": pos}, logits_to_keep=1):
            for layer in range(L):
                z = loaded.down_proj(layer).input
                h = loaded.down_proj(layer).output
                hn = h.float().norm(dim=-1).clamp_min(eps)                  # [B, T]
                w = torch.stack([_weights(ans, hn), _weights(oth, hn)], 1)  # [B, 2, T]
                r = torch.bmm(w, z.float().abs()) * norms[layer]            # [B, 2, F]
                a_layers.append(r[:, 0].cpu())
                o_layers.append(r[:, 1].cpu())
        ans_out[idx] = torch.stack(a_layers, 1)
        oth_out[idx] = torch.stack(o_layers, 1)
    return ans_out, oth_out


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
