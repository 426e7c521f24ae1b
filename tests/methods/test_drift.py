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
