"""Parameter drift between a base and a tuned model, per FFN neuron (the paper's origin analysis).

For neuron j of a layer: Δ_up = 1 − cos(W_up[j, :] base, W_up[j, :] tuned) and Δ_down = 1 − cos(W_down[:, j]
base, W_down[:, j] tuned). Each is z-scored over neurons (globally, or within each layer: the paper does not
say which, so both are shown), the two z-scores are averaged, all neurons are ranked by the average and the
ranks normalised to [0, 1] with 0 = the largest change. "Parameter inertia" = the H-neurons' mean normalised
rank is above the others' (they changed less).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import numpy as np
import torch

ZSCORES = ("global", "layer")


def _layers(hf: torch.nn.Module, layers_path: str) -> Any:
    return functools.reduce(getattr, layers_path.split("."), hf)


@torch.inference_mode()
def cosine_distances(base: torch.nn.Module, tuned: torch.nn.Module, layers_path: str,
                     tuned_layers_path: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(Δ_up, Δ_down), each float64 [n_layers, d_ff], computed in float64 one layer at a time."""
    lb, lt = _layers(base, layers_path), _layers(tuned, tuned_layers_path or layers_path)
    if len(lb) != len(lt):
        raise ValueError(f"the models have {len(lb)} and {len(lt)} layers: not a base/tuned pair")
    up, down = [], []
    for a, b in zip(lb, lt):
        ua, ub = a.mlp.up_proj.weight.double(), b.mlp.up_proj.weight.double()  # [d_ff, d_model]
        da, db = a.mlp.down_proj.weight.double(), b.mlp.down_proj.weight.double()  # [d_model, d_ff]
        if ua.shape != ub.shape or da.shape != db.shape:
            raise ValueError("FFN shapes differ between the two models: not a base/tuned pair")
        up.append((1 - torch.nn.functional.cosine_similarity(ua, ub, dim=1)).numpy())
        down.append((1 - torch.nn.functional.cosine_similarity(da, db, dim=0)).numpy())
    return np.stack(up), np.stack(down)


def _z(x: np.ndarray, per_layer: bool) -> np.ndarray:
    if per_layer:
        mu, sd = x.mean(1, keepdims=True), x.std(1, keepdims=True)
    else:
        mu, sd = x.mean(), x.std()
    return (x - mu) / np.where(sd > 0, sd, 1.0)


def normalised_ranks(d_up: np.ndarray, d_down: np.ndarray, zscore: str = "global") -> np.ndarray:
    """Normalised rank [n_layers, d_ff] of every neuron's average z-scored drift: 0 = largest change,
    1 = smallest. ``zscore``: 'global' (over all neurons) or 'layer' (within each layer)."""
    score = drift_score(d_up, d_down, zscore)
    from scipy.stats import rankdata

    flat = score.ravel()
    ranks = rankdata(-flat, method="average") - 1  # 0 = largest change; ties share their mean rank
    return (ranks / max(1, len(flat) - 1)).reshape(score.shape)


def per_layer_summary(ranks: np.ndarray, h_flat: Sequence[int]) -> "Any":
    """Per layer: number of H-neurons and their mean normalised rank, next to the layer's mean."""
    import pandas as pd

    L, F = ranks.shape
    rows = []
    for layer in range(L):
        hs = [f % F for f in h_flat if f // F == layer]
        rows.append({"layer": layer, "H-neurons": len(hs), "layer mean rank": float(ranks[layer].mean()),
                     "H mean rank": float(ranks[layer, hs].mean()) if hs else np.nan})
    return pd.DataFrame(rows)


def analyse(base_model: str, tuned_model: str, dtype: str, h_flat: Sequence[int], n_permutations: int,
            *, seed: int) -> tuple[Any, Any, np.ndarray, np.ndarray, dict]:
    """Load both models on the CPU in ``dtype``, measure every neuron's drift, and test the H-neurons'
    inertia under each z-scoring. Returns (tests table, per-H-neuron table, d_up, d_down, ranks)."""
    import gc

    import pandas as pd

    from hneuron_utils import models
    from hneuron_utils.stats import inertia_test

    base = models.load_model(base_model, dtype=dtype, device="cpu")
    tuned = models.load_model(tuned_model, dtype=dtype, device="cpu")
    d_up, d_down = cosine_distances(base.hf, tuned.hf, base.layers_path, tuned.layers_path)
    del base, tuned
    gc.collect()
    ranks = {z: normalised_ranks(d_up, d_down, z) for z in ZSCORES}
    tests = pd.DataFrame([{"zscore": z, **inertia_test(r, h_flat, n_permutations, seed)} for z, r in ranks.items()])
    F = d_up.shape[1]
    h = list(h_flat)
    h_table = pd.DataFrame({"flat_index": h, "layer": [f // F for f in h], "neuron": [f % F for f in h],
                            "delta_up": [d_up.ravel()[f] for f in h], "delta_down": [d_down.ravel()[f] for f in h],
                            **{f"rank_{z}": [r.ravel()[f] for f in h] for z, r in ranks.items()}})
    return tests, h_table, d_up, d_down, ranks


def drift_score(d_up: np.ndarray, d_down: np.ndarray, zscore: str = "global") -> np.ndarray:
    """The per-neuron score :func:`normalised_ranks` ranks: the mean of the z-scored Δ_up and Δ_down."""
    if zscore not in ZSCORES:
        raise ValueError(f"zscore must be one of {ZSCORES}, got {zscore!r}")
    return (_z(d_up, zscore == "layer") + _z(d_down, zscore == "layer")) / 2


def seed_reference(base: Any, tuned: Any, reference: Any, *, h_flat: Sequence[int], n_permutations: int,
                   seed: int) -> "Any":
    """The drift's size against a reference: ``reference`` is a second tuning of the same recipe that differs
    only in its seed (the order the pairs are seen in). ``base``, ``tuned`` and ``reference`` are loaded models
    (``.hf``, ``.layers_path``). One row per comparison, with the mean cosine distances of the up-projection rows
    and down-projection columns and their ratio to the base → tuned drift (0 = the recipe fixes the weights'
    change; about 2 = two independent changes of the same size, since 1 − cos grows with the squared angle).
    The second tuning's row adds Spearman's ρ between the two tunings' per-neuron drift scores (global z) and the
    H-neurons' inertia test under it (:func:`hneuron_utils.stats.inertia_test`, global z)."""
    import pandas as pd

    from hneuron_utils.stats import inertia_test, spearman_interval

    pairs = {"base → tuned": (base, tuned), "base → second tuning (another seed)": (base, reference),
             "tuned → second tuning": (tuned, reference)}
    dist = {name: cosine_distances(a.hf, b.hf, a.layers_path, b.layers_path) for name, (a, b) in pairs.items()}
    first = dist["base → tuned"]
    scale = (first[0].mean() + first[1].mean()) / 2
    rows = []
    for name, (up, down) in dist.items():
        row = {"comparison": name, "mean Δ up": float(up.mean()), "mean Δ down": float(down.mean()),
               "ratio to base → tuned": float((up.mean() + down.mean()) / 2 / scale) if scale > 0 else np.nan,
               "neurons": int(up.size)}
        if name.startswith("base → second"):
            rho, lo, hi = spearman_interval(drift_score(*first), drift_score(up, down))
            row.update({"ρ with base → tuned": rho, "ρ lo": lo, "ρ hi": hi})
            row.update(inertia_test(normalised_ranks(up, down, "global"), h_flat, n_permutations, seed))
        rows.append(row)
    return pd.DataFrame(rows)
