"""Parameter drift between a base and a tuned model (notebook 06)."""

import copy

import numpy as np
import pytest
import torch

from hneuron_utils import stats
from hneuron_utils.training import drift
from hneuron_utils.models import tiny
from hneuron_utils.workbook import readouts


def _pair():
    base = tiny.build_model(tiny.build_tokenizer())
    tuned = copy.deepcopy(base)
    return base, tuned


def test_identical_models_have_zero_drift():
    base, tuned = _pair()
    up, down = drift.cosine_distances(base, tuned, "model.layers")
    assert up.shape == down.shape == (3, 128)
    assert np.allclose(up, 0, atol=1e-12) and np.allclose(down, 0, atol=1e-12)


def test_the_turned_neuron_ranks_first_and_untouched_ones_last():
    base, tuned = _pair()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in tuned.model.layers:  # small noise everywhere
            layer.mlp.up_proj.weight.add_(torch.randn(layer.mlp.up_proj.weight.shape, generator=g) * 1e-3)
            layer.mlp.down_proj.weight.add_(torch.randn(layer.mlp.down_proj.weight.shape, generator=g) * 1e-3)
        tuned.model.layers[1].mlp.up_proj.weight[7] *= -1  # one neuron turned around
        tuned.model.layers[1].mlp.down_proj.weight[:, 7] += 1.0
    up, down = drift.cosine_distances(base, tuned, "model.layers")
    for z in drift.ZSCORES:
        r = drift.normalised_ranks(up, down, z)
        assert r[1, 7] == 0.0  # most changed
        assert r.min() == 0.0 and r.max() == 1.0
        assert np.isclose(np.sort(r.ravel()), np.linspace(0, 1, r.size)).all()  # ranks are a permutation
    with pytest.raises(ValueError):
        drift.normalised_ranks(up, down, "nope")


def test_per_layer_zscoring_differs_from_global_when_layers_differ():
    rng = np.random.default_rng(0)
    up = np.vstack([rng.normal(1, 0.1, 50), rng.normal(5, 0.1, 50)])
    down = up.copy()
    g = drift.normalised_ranks(up, down, "global")
    l = drift.normalised_ranks(up, down, "layer")
    assert g[1].max() < g[0].min()  # globally, the whole second layer changed more
    assert abs(l[0].mean() - l[1].mean()) < 0.05  # within layers, both are spread out


def test_inertia_test_finds_a_set_of_unchanged_neurons_and_not_a_random_one():
    rng = np.random.default_rng(1)
    ranks = rng.permutation(np.linspace(0, 1, 2000)).reshape(4, 500)
    flat = ranks.ravel()
    top = np.argsort(-flat)[:30]  # the 30 least-changed neurons
    res = stats.inertia_test(ranks, top, 2000, 0)
    assert res["H mean rank"] > 0.95 and res["p (t-test, one-sided)"] < 1e-6 and res["p (permutation)"] < 0.01
    rand = stats.inertia_test(ranks, rng.choice(2000, 30, replace=False), 2000, 0)
    assert rand["p (permutation)"] > 0.01
    with pytest.raises(ValueError):
        stats.inertia_test(ranks, [5000], 10, 0)


def test_inertia_test_is_two_sided_and_reads_a_set_that_changed_more():
    rng = np.random.default_rng(2)
    ranks = rng.permutation(np.linspace(0, 1, 2000)).reshape(4, 500)
    flat = ranks.ravel()
    most = np.argsort(flat)[:30]  # the 30 most-changed neurons
    res = stats.inertia_test(ranks, most, 2000, 0)
    assert res["difference hi"] < 0 and res["p (t-test, two-sided)"] < 1e-6 and res["p (permutation, two-sided)"] < 0.01
    assert res["p (t-test, one-sided)"] > 0.99  # the paper's one-sided test cannot see it
    import pandas as pd
    text = readouts.read_inertia(pd.DataFrame([{"zscore": "global", **res}]))[0]
    assert "MORE than the others" in text
    rand = stats.inertia_test(ranks, rng.choice(2000, 30, replace=False), 2000, 0)
    assert "no detectable difference" in readouts.read_inertia(pd.DataFrame([{"zscore": "global", **rand}]))[0]
    assert 0 < rand["smallest detectable difference"] < 0.5


class _Loaded:
    def __init__(self, hf):
        self.hf, self.layers_path = hf, "model.layers"


def _tuned_copy(base, common, noise_seed, noise):
    model = copy.deepcopy(base)
    g = torch.Generator().manual_seed(noise_seed)
    with torch.no_grad():
        for layer, (c_up, c_down) in zip(model.model.layers, common):
            up, down = layer.mlp.up_proj.weight, layer.mlp.down_proj.weight
            up.add_(c_up + torch.randn(up.shape, generator=g) * noise)
            down.add_(c_down + torch.randn(down.shape, generator=g) * noise)
    return model


def _common_change(base, seed=0, size=1e-2):
    g = torch.Generator().manual_seed(seed)
    out = []
    for layer in base.model.layers:
        up, down = layer.mlp.up_proj.weight, layer.mlp.down_proj.weight
        scale_up = torch.rand(up.shape[0], 1, generator=g) ** 4  # some neurons move much more than others
        scale_down = torch.rand(1, down.shape[1], generator=g) ** 4
        out.append((torch.randn(up.shape, generator=g) * size * scale_up,
                    torch.randn(down.shape, generator=g) * size * scale_down))
    return out


def test_seed_reference_tells_a_recipe_driven_drift_from_seed_noise():
    base = tiny.build_model(tiny.build_tokenizer())
    common = _common_change(base)
    # the recipe sets the change, the seed adds little: the tunings agree and sit close together
    tuned, ref = _tuned_copy(base, common, 1, 1e-4), _tuned_copy(base, common, 2, 1e-4)
    table = drift.seed_reference(_Loaded(base), _Loaded(tuned), _Loaded(ref), h_flat=[0, 5, 130],
                                 n_permutations=200, seed=0)
    rows = table.set_index("comparison")
    assert list(rows.index) == ["base → tuned", "base → second tuning (another seed)", "tuned → second tuning"]
    assert rows.loc["tuned → second tuning", "ratio to base → tuned"] < 0.2
    second = rows.loc["base → second tuning (another seed)"]
    assert second["ρ lo"] > 0.8 and second["ρ lo"] <= second["ρ with base → tuned"] <= second["ρ hi"]
    assert second["H-neurons"] == 3 and rows.loc["base → tuned", "neurons"] == 3 * 128
    text = readouts.read_drift_reference(table)
    assert "the same neurons tend to move most under both seeds" in text[1]
    # only noise: two independent changes, about twice the drift apart
    zero = [(torch.zeros_like(u), torch.zeros_like(d)) for u, d in common]
    tuned, ref = _tuned_copy(base, zero, 1, 1e-3), _tuned_copy(base, zero, 2, 1e-3)
    noisy = drift.seed_reference(_Loaded(base), _Loaded(tuned), _Loaded(ref), h_flat=[0, 5, 130],
                                 n_permutations=200, seed=0).set_index("comparison")
    assert 1.6 < noisy.loc["tuned → second tuning", "ratio to base → tuned"] < 2.4
    # isotropic noise turns short weight rows further, so even pure noise moves the same neurons most under both
    # seeds to some degree: ρ is lower than under a shared change, and the distance ratio is what tells them apart
    assert noisy.loc["base → second tuning (another seed)", "ρ hi"] < second["ρ lo"]


def test_spearman_interval_needs_matching_measures():
    rng = np.random.default_rng(0)
    x = rng.normal(size=500)
    rho, lo, hi = stats.spearman_interval(x, x + rng.normal(size=500))
    assert lo < rho < hi and 0.5 < rho < 0.8
    with pytest.raises(ValueError):
        stats.spearman_interval(x, x[:100])
