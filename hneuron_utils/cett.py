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
