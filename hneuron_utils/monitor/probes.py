"""Detectors over token streams: the step-level probe and the prefix integrator of the streaming
paper on one feature source (the H-neurons, random neurons, or a residual layer), the token-level
baselines (the H-neuron classifier on the running mean, the model's own log-probability), the early-
detection curve, the alarm dynamics and the guard's bookkeeping.

Design (arXiv 2601.02170, as in its public code): steps are sentences; step features are the step's
token features averaged with weights ∝ e^{3u} and L2-normalised; the step probe is a logistic model (BCE +
L2 1e-4, LBFGS); the prefix probe reads the causal mean of the step features so far and is trained with
L_anchor + 120·L_sync (:func:`hneuron_utils.monitor.train_prefix_probe`). Deviation, stated in the
notebook: no step labels exist here, so each step carries its stream's outcome, and the sync teacher is
notebook 03's H-neuron classifier on the running mean (not a probe trained on step labels)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch

from hneuron_utils.monitor import causal_pool, step_features, stream_scores, train_prefix_probe

SOURCES = ("H-neurons", "random neurons", "residual")


def source_columns(source: str, hcett: np.ndarray, resid: np.ndarray | None, k_h: int) -> np.ndarray:
    """Per-token features of one source from what the monitor read: the H-neurons' CETT (the first ``k_h``
    monitored columns), the random control neurons' CETT (the rest), or the residual layer."""
    if source == "H-neurons":
        return hcett[:, :k_h]
    if source == "random neurons":
        return hcett[:, k_h:]
    if source == "residual":
        if resid is None:
            raise ValueError("this stream was generated without a residual layer")
        return resid
    raise ValueError(f"source must be one of {SOURCES}, got {source!r}")


def token_features(stream: Any, source: str, k_h: int) -> np.ndarray:
    """A stream's per-token features from one source (:func:`source_columns`)."""
    return source_columns(source, stream.hcett, stream.resid, k_h)


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1e-4, max_iter: int = 200) -> tuple[np.ndarray, float]:
    """The step-level probe: mean BCE + ``l2``·‖w‖², LBFGS (float64). Returns (weights, bias)."""
    X = torch.tensor(np.asarray(X), dtype=torch.float64)
    Y = torch.tensor(np.asarray(y, dtype=float), dtype=torch.float64)
    w = torch.zeros(X.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=max_iter, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        opt.zero_grad()
        total = torch.nn.functional.binary_cross_entropy_with_logits(X @ w + b, Y) + l2 * (w ** 2).sum()
        total.backward()
        return total

    opt.step(loss)
    return w.detach().numpy(), float(b.detach())


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


@dataclass
class StreamProbe:
    """A step probe and a prefix probe on one feature source (per-token standardisation from training)."""

    source: str
    mean: np.ndarray
    std: np.ndarray
    sharpness: float
    step_w: np.ndarray
    step_b: float
    prefix_w: np.ndarray
    prefix_b: float

    def steps(self, x: np.ndarray, spans: Sequence[tuple[int, int]]) -> np.ndarray:
        return step_features((np.asarray(x, float) - self.mean) / self.std, spans, self.sharpness)

    def step_scores(self, x: np.ndarray, spans: Sequence[tuple[int, int]]) -> np.ndarray:
        """P(hallucinated) of each step on its own."""
        return _sigmoid(self.steps(x, spans) @ self.step_w + self.step_b)

    def prefix_scores(self, x: np.ndarray, spans: Sequence[tuple[int, int]]) -> np.ndarray:
        """P(hallucinated) of the prefix after each step."""
        return _sigmoid(causal_pool(self.steps(x, spans)) @ self.prefix_w + self.prefix_b)

    def at_tokens(self, x: np.ndarray, spans: Sequence[tuple[int, int]], positions: Sequence[int]) -> np.ndarray:
        """The prefix score after t tokens, for each t in ``positions`` (t beyond the stream: its last
        score): the closed steps so far plus the open step's tokens up to t, pooled causally."""
        n = len(x)
        out = []
        for t in positions:
            t = min(int(t), n)
            cut = [(a, min(b, t)) for a, b in spans if a < t]
            out.append(self.prefix_scores(x[:t], cut)[-1])
        return np.asarray(out)


def fit_stream_probe(source: str, xs: Sequence[np.ndarray], spans: Sequence[Sequence[tuple[int, int]]],
                     y: np.ndarray, teacher: Sequence[np.ndarray], *, sharpness: float = 3.0, l2: float = 1e-4,
                     sync_weight: float = 120.0, last_weight: float = 30.0) -> StreamProbe:
    """Fit both probes of one source on training streams (``y``: 1 = hallucinated, the label of every
    step; ``teacher``: the sync teacher's score after each step)."""
    allx = np.concatenate([np.asarray(x, float) for x in xs])
    mean, std = allx.mean(0), np.maximum(allx.std(0), 1e-6)
    p = StreamProbe(source, mean, std, sharpness, np.zeros(allx.shape[1]), 0.0, np.zeros(allx.shape[1]), 0.0)
    steps = [p.steps(x, s) for x, s in zip(xs, spans)]
    labels = [np.full(len(s), float(yi)) for s, yi in zip(steps, y)]
    p.step_w, p.step_b = fit_logistic(np.concatenate(steps), np.concatenate(labels), l2)
    p.prefix_w, p.prefix_b = train_prefix_probe(steps, labels, teacher, sync_weight, last_weight, l2=l2)
    return p


def at_step_ends(per_token: np.ndarray, spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """A token-level score read after each step's last token."""
    return np.asarray([per_token[b - 1] for _, b in spans])


def running_nll(logprob: np.ndarray) -> np.ndarray:
    """The model's own confidence as a running score: mean negative log-probability of the tokens so far."""
    lp = np.asarray(logprob, float)
    return -np.cumsum(lp) / np.arange(1, len(lp) + 1)


def h_running(clf: Any, streams: Sequence[Any], k_h: int) -> list[np.ndarray]:
    """Notebook 03's H-neuron classifier on the running mean of the streamed H-neuron CETT, per token."""
    return stream_scores(clf, [s.hcett[:, :k_h] for s in streams])


# --------------------------------------------------------------------------- guards and their bookkeeping


def probe_guard_score(probe: StreamProbe, k_h: int) -> Callable:
    """A :class:`~hneuron_utils.monitor.live.Guard` score: the probe's prefix score after the last step."""
    def score(h: np.ndarray, r: Any, lp: np.ndarray, spans: list) -> float:
        return float(probe.prefix_scores(source_columns(probe.source, h, r, k_h), spans)[-1])
    return score


def nll_guard_score(h: np.ndarray, r: Any, lp: np.ndarray, spans: list) -> float:
    """A guard score from the model's own log-probability: the answer's mean NLL so far."""
    return float(-np.mean(lp))


def alarm_scores(step_scores: Sequence[np.ndarray]) -> np.ndarray:
    """An abstaining guard stops at the first step whose score reaches τ, so it answers exactly the
    streams whose highest step score stays below τ: that maximum is the stream's guard score."""
    return np.array([float(np.max(s)) for s in step_scores])


def tau_for_coverage(scores: np.ndarray, coverage: float) -> float:
    """The τ at which a guard abstaining on ``score ≥ τ`` answers ``coverage`` of these streams."""
    if not 0 < coverage <= 1:
        raise ValueError("coverage must be in (0, 1]")
    s = np.sort(np.asarray(scores, float))
    k = int(np.floor(coverage * len(s)))
    return float(np.inf) if k >= len(s) else float(s[k])


def _risk(scores: np.ndarray, hallucinated: np.ndarray, idx: np.ndarray, coverage: float) -> float:
    """Hallucination rate among the ``coverage`` share of questions ``idx`` with the lowest scores (stable ties)."""
    k = max(1, int(np.floor(coverage * len(idx))))
    return float(hallucinated[idx[np.argsort(scores[idx], kind="stable")[:k]]].mean())


def risk_at_coverage(scores: np.ndarray, hallucinated: np.ndarray, coverage: float, n_boot: int,
                     seed: int) -> dict[str, float]:
    """Hallucination rate among the ``coverage`` share of questions with the lowest guard scores (ties
    broken by order), with a bootstrap interval over questions (the cut re-ranked in every resample)."""
    s, h = np.asarray(scores, float), np.asarray(hallucinated, float)
    rng = np.random.default_rng(seed)
    boots = [_risk(s, h, rng.integers(0, len(s), len(s)), coverage) for _ in range(n_boot)]
    lo, hi = np.quantile(boots, [0.025, 0.975])
    return {"risk": _risk(s, h, np.arange(len(s)), coverage), "risk_lo": float(lo), "risk_hi": float(hi),
            "answered": max(1, int(np.floor(coverage * len(s)))), "n": len(s)}


def paired_risk_difference(a: np.ndarray, b: np.ndarray, hallucinated: np.ndarray, coverage: float, n_boot: int,
                           *, seed: int) -> dict[str, float]:
    """Risk at ``coverage`` of guard score ``a`` minus that of ``b`` on the same questions, with a paired
    bootstrap interval."""
    a, b, h = (np.asarray(v, float) for v in (a, b, hallucinated))
    rng = np.random.default_rng(seed)
    d = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(h), len(h))
        d.append(_risk(a, h, idx, coverage) - _risk(b, h, idx, coverage))
    lo, hi = np.quantile(d, [0.025, 0.975])
    full = np.arange(len(h))
    return {"difference": _risk(a, h, full, coverage) - _risk(b, h, full, coverage), "lo": float(lo), "hi": float(hi),
            "n": len(h)}


def tokens_until_alarm(step_scores: Sequence[np.ndarray], spans: Sequence[Sequence[tuple[int, int]]],
                       tau: float) -> np.ndarray:
    """Tokens an abstaining guard lets the model write: up to the end of the first step at or above τ,
    else the whole answer."""
    out = []
    for s, sp in zip(step_scores, spans):
        hit = np.flatnonzero(np.asarray(s) >= tau)
        out.append(sp[hit[0]][1] if len(hit) else sp[-1][1])
    return np.asarray(out)


def dynamics(step_scores: Sequence[np.ndarray], spans: Sequence[Sequence[tuple[int, int]]], y: np.ndarray,
             tau: float) -> pd.DataFrame:
    """The streaming paper's alarm dynamics that apply with outcome-only labels (onset = the first step):
    among hallucinated streams, the share alarmed at the first step and by the end, and the tokens from the
    answer's start to the first alarm; among correct streams, the share with any (false) alarm and the
    mean length of false-alarm runs in steps. Recovery after the label returns to 0 does not apply here
    (an outcome label never returns to 0)."""
    from hneuron_utils.stats import rate_with_ci

    y = np.asarray(y)
    first = [bool(s[0] >= tau) for s, yi in zip(step_scores, y) if yi == 1]
    ever = [bool((np.asarray(s) >= tau).any()) for s, yi in zip(step_scores, y) if yi == 1]
    lag = [sp[int(np.flatnonzero(np.asarray(s) >= tau)[0])][1] for s, sp, yi in zip(step_scores, spans, y)
           if yi == 1 and (np.asarray(s) >= tau).any()]
    false = [bool((np.asarray(s) >= tau).any()) for s, yi in zip(step_scores, y) if yi == 0]
    runs = []
    for s, yi in zip(step_scores, y):
        if yi == 0:
            above = np.r_[0, (np.asarray(s) >= tau).astype(int), 0]
            edges = np.flatnonzero(np.diff(above))
            runs += list(edges[1::2] - edges[::2])
    rows = []
    for name, flags in (("hallucinated: alarmed at the first step", first), ("hallucinated: alarmed by the end", ever),
                        ("correct: any false alarm", false)):
        r = rate_with_ci(flags)
        rows.append({"measure": name, "value": r.rate, "lo": r.lo, "hi": r.hi, "n": r.n})
    rows.append({"measure": "hallucinated: tokens to the first alarm (median)",
                 "value": float(np.median(lag)) if lag else np.nan, "lo": np.nan, "hi": np.nan, "n": len(lag)})
    rows.append({"measure": "correct: false-alarm run length in steps (mean)",
                 "value": float(np.mean(runs)) if runs else np.nan, "lo": np.nan, "hi": np.nan, "n": len(runs)})
    return pd.DataFrame(rows)
