"""Per-token scores of a streaming hallucination monitor: the H-neurons' CETT at every
answer token, their running mean over the answer so far, and the H-neuron classifier applied
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
        per = torch.cat([s.cpu() for s in saved], -1)  # [B, T, k]
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


# --------------------------------------------------------------------------- steps and the prefix integrator
# After the streaming-detection design of arXiv 2601.02170: steps are sentences; a step-level probe reads
# each step's features pooled with weights growing towards the step's end; a prefix-level probe reads a
# causal running pool over all steps so far and is trained to track the cumulative label while never
# staying below a confident step probe (missed alarms are penalised, false alarms are not).

SENTENCE_END = ".!?"


def step_token_spans(token_ends: Sequence[int], text: str) -> list[tuple[int, int]]:
    """Sentence steps as half-open token ranges, from each answer token's end offset in ``text``
    (characters). A step ends at the token that closes a sentence (``.``, ``!``, ``?`` followed by
    whitespace or the end); a last unfinished sentence is a step too."""
    spans, start = [], 0
    for t, end in enumerate(token_ends):
        closes = end > 0 and text[end - 1] in SENTENCE_END and (end == len(text) or text[end].isspace())
        if closes:
            spans.append((start, t + 1))
            start = t + 1
    if start < len(token_ends):
        spans.append((start, len(token_ends)))
    return spans


def step_features(x: Any, spans: Sequence[tuple[int, int]], sharpness: float = 3.0) -> np.ndarray:
    """One vector per step: the step's token features averaged with weights ∝ exp(sharpness·u), u running
    from 0 to 1 over the step's tokens (later tokens weigh more), then L2-normalised. [n_steps, k]."""
    x = np.asarray(x, dtype=np.float64)
    out = []
    for a, b in spans:
        u = np.linspace(0.0, 1.0, b - a) if b - a > 1 else np.ones(1)
        w = np.exp(sharpness * u)
        v = (w[:, None] * x[a:b]).sum(0) / w.sum()
        out.append(v / max(np.linalg.norm(v), 1e-12))
    return np.asarray(out).reshape(len(spans), x.shape[1])


def causal_pool(steps: np.ndarray) -> np.ndarray:
    """Row s = the mean of step vectors 0..s (the prefix's pooled features)."""
    return running_mean(steps)


def train_prefix_probe(steps: Sequence[np.ndarray], labels: Sequence[np.ndarray], teacher: Sequence[np.ndarray],
                       sync_weight: float = 120.0, last_weight: float = 30.0, *, l2: float = 1e-4,
                       max_iter: int = 200) -> tuple[np.ndarray, float]:
    """The prefix-level probe: a logistic model on :func:`causal_pool` features, fitted with LBFGS to
    L = L_anchor + sync_weight · L_sync, where L_anchor is the binary cross-entropy against each step's
    cumulative label (the last step weighted ``last_weight``) and L_sync = Σ relu(p_teacher − p_prefix)² ·
    p_teacher² / Σ steps penalises only steps where the frozen step-level ``teacher`` is more alarmed than
    the prefix probe. Plus ``l2``·‖w‖². Returns (weights, bias)."""
    X = torch.tensor(np.concatenate([causal_pool(s) for s in steps]), dtype=torch.float64)
    Y = torch.tensor(np.concatenate([np.asarray(lab, float) for lab in labels]), dtype=torch.float64)
    T = torch.tensor(np.concatenate([np.asarray(t, float) for t in teacher]), dtype=torch.float64)
    W = torch.cat([torch.cat([torch.ones(len(s) - 1), torch.tensor([last_weight])]) for s in steps]).double()
    if not (len(X) == len(Y) == len(T)):
        raise ValueError("steps, labels and teacher scores must align step by step")
    w = torch.zeros(X.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=max_iter, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        opt.zero_grad()
        logit = X @ w + b
        anchor = (W * torch.nn.functional.binary_cross_entropy_with_logits(logit, Y, reduction="none")).sum() / W.sum()
        p = torch.sigmoid(logit)
        sync = (torch.relu(T - p) ** 2 * T ** 2).sum() / len(X)
        total = anchor + sync_weight * sync + l2 * (w ** 2).sum()
        total.backward()
        return total

    opt.step(loss)
    return w.detach().numpy(), float(b.detach())


def prefix_scores(steps: np.ndarray, weights: np.ndarray, bias: float) -> np.ndarray:
    """The prefix probe's P(hallucinated) after each step."""
    return 1.0 / (1.0 + np.exp(-(causal_pool(steps) @ weights + bias)))


# --------------------------------------------------------------------------- how early, and at what cost


def score_after(scores: Sequence[np.ndarray], t: int) -> np.ndarray:
    """Each stream's score after ``t`` tokens (or steps); a stream shorter than ``t`` keeps its last score."""
    if t < 1:
        raise ValueError("t counts tokens (or steps) and starts at 1")
    return np.array([s[min(t, len(s)) - 1] for s in scores])


def auroc_by_position(scores: Sequence[np.ndarray], y: np.ndarray, positions: Sequence[int], n_boot: int = 1000,
                      seed: int = 0) -> "Any":
    """How early does the monitor know? AUROC (95% bootstrap interval over streams) of the score after t
    tokens, for each t in ``positions``."""
    import pandas as pd

    from hneuron_utils.stats import bootstrap_ci

    rows = []
    for t in positions:
        pt, lo, hi = bootstrap_ci(np.asarray(y), score_after(scores, t), "auroc", n_boot, seed)
        rows.append({"tokens": t, "auroc": pt, "auroc_lo": lo, "auroc_hi": hi, "n": len(y)})
    return pd.DataFrame(rows)


def risk_coverage(scores: np.ndarray, hallucinated: np.ndarray) -> "Any":
    """A guard that abstains when the score reaches τ: for every τ (each distinct score, and +∞ = never
    abstain), the share of questions answered (coverage) and the hallucination rate among them (risk)."""
    import pandas as pd

    s, h = np.asarray(scores, float), np.asarray(hallucinated, bool)
    rows = []
    for tau in np.r_[np.unique(s), np.inf]:
        answered = s < tau
        n = int(answered.sum())
        rows.append({"tau": tau, "coverage": n / len(s), "answered": n,
                     "risk": float(h[answered].mean()) if n else np.nan})
    return pd.DataFrame(rows)
