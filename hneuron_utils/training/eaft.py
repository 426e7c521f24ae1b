"""Entropy-adaptive fine-tuning (EAFT, arXiv 2601.02151): each response token's cross-entropy is weighted
by the model's own normalised entropy at that position, so tokens the model predicts confidently *and*
wrongly ("confident conflicts") pull on the weights less than under plain supervised fine-tuning.

The gate follows the reference implementation (LLaMA-Factory's ``use_eaft_loss``): w = (H_k / 3.0)^α, where
H_k is the entropy of the softmax renormalised over the k = 20 largest logits (3.0 ≈ ln 20, the largest
H_k can be), computed on detached float logits (a stop-gradient gate: no gradient flows through w), and the
weighted losses are averaged over the response tokens. α = 0 gives w = 1, plain cross-entropy.
"""

from __future__ import annotations

import math

import torch

LOSSES = ("sft", "eaft")
EAFT_SCALE = 3.0  # the reference divides by 3.0 (≈ ln 20 = 2.996)


@torch.no_grad()
def topk_entropy(logits: torch.Tensor, k: int = 20) -> torch.Tensor:
    """Entropy (nats) of the softmax over the ``k`` largest logits of each row, renormalised among them."""
    top = logits.detach().float().topk(min(k, logits.shape[-1]), dim=-1).values
    logp = top - torch.logsumexp(top, dim=-1, keepdim=True)
    return -(logp.exp() * logp).sum(-1)


@torch.no_grad()
def eaft_gate(logits: torch.Tensor, alpha: float = 1.0, k: int = 20, scale: float = EAFT_SCALE) -> torch.Tensor:
    """The per-token weight (H_k / scale)^α of EAFT, detached."""
    if alpha < 0 or k < 1 or scale <= 0:
        raise ValueError(f"need alpha >= 0, k >= 1 and scale > 0, got {alpha}, {k}, {scale}")
    return torch.pow(topk_entropy(logits, k) / scale, alpha)


def token_objective(logits: torch.Tensor, target: torch.Tensor, loss: str = "sft", alpha: float = 1.0,
                    k: int = 20) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(the loss to minimise, the per-token cross-entropy, the per-token weight) for response-token
    ``logits`` [N, V] and their ``target`` ids [N]: ``sft`` = mean cross-entropy (weights 1); ``eaft`` = mean
    of cross-entropy × :func:`eaft_gate`."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    ce = torch.nn.functional.cross_entropy(logits.float(), target, reduction="none")
    w = eaft_gate(logits, alpha, k) if loss == "eaft" else torch.ones_like(ce)
    return (ce * w).mean(), ce.detach(), w


def normalised_entropy(logits: torch.Tensor, k: int = 20) -> torch.Tensor:
    """H_k / ln k in [0, 1] (the confident-conflict analysis' entropy axis)."""
    return topk_entropy(logits, k) / math.log(max(k, 2))
