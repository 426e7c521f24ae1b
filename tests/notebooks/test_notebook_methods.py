"""The by-hand method cells of notebooks 02 (CETT in a visible nnsight trace) and 03 (the L1 fit with
scikit-learn), run as they stand in the notebooks on small inputs: their checks against the package's fast
path pass, and they come before the package's step that they explain."""
import contextlib
import types

import numpy as np
import pandas as pd
import pytest

from hneuron_utils.paths import project_root
from notebook_cells import cells as _cells, position as _position, run_cells as _run

NB02 = project_root() / "notebooks" / "02_extract_cett.ipynb"
NB03 = project_root() / "notebooks" / "03_sparse_probe.ipynb"
# the method cells, in order (their ids are fixed in the committed notebooks)
CELLS_02 = ["5cd21dd1", "7d555e93", "400e9c21", "2bca4203"]
CELLS_03 = ["394927ec", "5ad4fbd1", "112f4efa", "44ce95dc", "6ba504bd", "4498ebd4"]


def test_the_method_cells_come_before_the_package_steps_they_explain():
    pos02 = {c.id: i for i, c in enumerate(_cells(NB02))}
    assert max(pos02[c] for c in CELLS_02) < _position(NB02, "cett.extract_cached(")
    pos03 = {c.id: i for i, c in enumerate(_cells(NB03))}
    fit_by_hand, check = pos03["112f4efa"], pos03["4498ebd4"]
    assert fit_by_hand < _position(NB03, "probe.c_grid(") < check < _position(NB03, "suppression_accuracies(")


@pytest.mark.parametrize("backend", ["local", "ndif-local"])
def test_02_cett_by_hand_equals_the_package_on_the_tiny_model(tiny, backend):
    """Also through nnsight's simulation of NDIF (the trace serialised with the workbook's modules hidden), whose
    fast path returns float16 sums: the cell's float16 tolerance."""
    import torch

    from hneuron_utils.features import cett
    from hneuron_utils.models import remote
    from qa_examples import examples as _examples

    loaded = tiny if backend == "local" else remote.simulated(tiny)
    tf = _examples(tiny)
    examples = pd.DataFrame({"id": [f"q{i}" for i in range(len(tf))], "label": [1, 0, 1, 0, 0][:len(tf)]})
    examples["class"] = examples.label.map({1: "hallucinated", 0: "faithful"})
    ns = _run(NB02, CELLS_02, {"examples": examples, "tf": tf, "loaded": loaded, "cett": cett, "torch": torch,
                               "pd": pd})
    assert ns["by_hand"].shape == (2, tiny.n_layers, 2, tiny.d_ff)
    assert ns["few"][0] is tf[0] and ns["few"][1] is tf[1]  # the first hallucinated, the first faithful
    ref_a, ref_o = cett.extract_reference(tiny.hf, tiny.hf.model.layers, ns["few"])  # and the float64 hooks agree
    torch.testing.assert_close(ns["by_hand"], torch.stack([ref_a, ref_o], 2).float(), rtol=1e-5, atol=0.0)


@pytest.mark.parametrize("mode", ["3-vs-1", "1-vs-1"])
def test_03_l1_fit_by_hand_equals_the_package_grid(mode):
    from hneuron_utils import checks
    from hneuron_utils.probes import probe
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    n, L, F = 60, 2, 16
    y = np.tile([0, 1], n // 2)
    ans = rng.random((n, L * F), dtype=np.float32) * 0.01
    ans[:, 5] += 0.02 * y                    # two neurons that carry the label
    ans[:, 20] += 0.01 * y
    oth = rng.random((n, L * F), dtype=np.float32) * 0.01
    tr, te = np.arange(n) < 40, np.arange(n) >= 40
    cfg = types.SimpleNamespace(probe_mode=mode, probe_Cs=[1.0, 10.0, 100.0], probe_tol=1e-6, seed=0, val_fraction=0.25)
    nb = types.SimpleNamespace(timed=lambda what: contextlib.nullcontext())
    ns = _run(NB03, CELLS_03, {"ans": ans, "oth": oth, "y": y, "tr": tr, "te": te, "L": L, "F": F, "cfg": cfg, "nb": nb,
                               "np": np, "pd": pd, "probe": probe, "checks": checks,
                               "LogisticRegression": LogisticRegression})
    assert ns["C_hand"] == 10.0 and len(ns["pos_hand"]) >= 1
    assert "X_hand" not in ns  # dropped once fitted
