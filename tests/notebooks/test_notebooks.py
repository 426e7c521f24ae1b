"""Static checks of every numbered notebook, and the smoke run of all of them through papermill."""

import json
import re

import nbformat
import pytest
import yaml

from hneuron_utils.workbook import config, run
from hneuron_utils.paths import project_root

NOTEBOOKS = run.notebooks()


def _params_cell(nb):
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "exactly one cell must be tagged 'parameters'"
    return cells[0]


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS][:1] == ["00_setup.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_structure(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == run.KERNEL_NAME
    cell = _params_cell(nb)
    names = config.literal_assignments(cell.source)
    assert names, "the parameters cell must hold only `name = <literal>` lines"
    assert set(names) <= set(config.PARAM_NAMES)
    default = yaml.safe_load((project_root() / "params" / "default.yaml").read_text())
    ns = {}
    exec(cell.source, ns)
    assert {n: ns[n] for n in names} == {n: default[n] for n in names}, "parameters cell must equal default.yaml"
    nxt = nb.cells[nb.cells.index(cell) + 1:]
    first_code = next(c for c in nxt if c.cell_type == "code")
    assert "config.from_notebook(globals())" in first_code.source, "the cell after parameters must validate them"
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    used = {n for n in config.PARAM_NAMES if re.search(rf"\bcfg\.{n}\b", code)}
    assert used <= set(names), f"notebook reads parameters it does not declare: {used - set(names)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    for c in nb["cells"]:
        if c["cell_type"] == "code":
            assert c["outputs"] == [] and c["execution_count"] is None, f"outputs not stripped in {path.name}"


@pytest.mark.notebooks
def test_misspelt_injected_parameter_fails_in_the_validation_cell(tmp_path):
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    kernel = run.ensure_kernel()
    with pytest.raises(PapermillExecutionError) as e:
        pm.execute_notebook(str(NOTEBOOKS[0]), str(tmp_path / "out.ipynb"), parameters={"modle": "tiny-random"},
                            kernel_name=kernel, progress_bar=False, cwd=str(project_root()))
    assert e.value.ename == "ConfigError" and "Did you mean 'model'" in e.value.evalue


@pytest.mark.notebooks
@pytest.mark.real_model
@pytest.mark.network
def test_smoke_profile_runs_every_notebook():
    log = run.run("smoke", log_output=False)
    assert set(log["notebooks"]) == {p.name for p in NOTEBOOKS}
    assert all(v["status"] == "ok" for v in log["notebooks"].values())
    out = project_root() / "results" / "smoke"
    for p in NOTEBOOKS:
        nb = nbformat.read(out / p.name, as_version=4)
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        assert not errors
    from hneuron_utils.workbook import figures

    for name in figures.REGISTRY:  # every registered figure of 00–03 rendered
        if name[:2] <= max(p.name[:2] for p in NOTEBOOKS):
            assert (out / "figures" / f"{name}.png").stat().st_size > 10_000, name
    hn = (out / "data" / "03_h_neurons.csv").read_text().splitlines()
    assert hn[0].startswith("layer,neuron,flat_index,coefficient,C,mode,model,data_hash")
    # both classes by construction: the whole pool holds many times what the smoke run needs (01, and 06's
    # run of 01 on its tuned model), so no borderline count on some CPU can empty a class
    import pandas as pd

    from hneuron_utils import checks

    prof = config.load_profile("smoke")
    need = prof["n_train_per_class"] + prof["n_test_per_class"]
    for run_folder in ("smoke", "smoke-origin"):
        margin = checks.pool_margin(pd.read_csv(project_root() / "results" / run_folder / "tables" / "01_funnel.csv"), need)
        assert min(margin.values()) >= 3, (run_folder, margin)
    # quiet executed notebooks: no weight-loading bars, no kernel transport warnings
    for p in NOTEBOOKS:
        text = (out / p.name).read_text()
        assert "Loading weights" not in text and "without encryption" not in text, p.name


LIGHT_03 = {"random_draws": 2, "n_bootstrap": 20, "stability_boots": 1}
"""For 03's re-runs in these tests: fewer random draws and resamples (the H-neuron set does not depend on them)."""


@pytest.mark.notebooks
@pytest.mark.real_model
@pytest.mark.network
def test_cett_through_the_ndif_trace_gives_the_smoke_runs_features_and_h_neurons(tmp_path, monkeypatch):
    """02–03 again on the smoke run's own dataset with activations_backend 'ndif-local': every CETT trace
    serialised as for NDIF and run here with the workbook's modules hidden (nnsight's remote="local"). Same
    machine, same kernels: the features agree within their float16 storage and the H-neuron set is the same."""
    import pandas as pd
    import torch

    from hneuron_utils.features import cett
    from hneuron_utils.probes.probe import jaccard
    from hneuron_utils.workbook import repro

    src = project_root() / "results" / "smoke"
    if not (src / "data" / "03_h_neurons.csv").exists():
        pytest.skip("needs the smoke run (test_smoke_profile_runs_every_notebook) first")
    record = json.loads((src / "data" / "02_features.json").read_text())
    _, ans_local, _ = cett.load_features(cett.features_dir(record))
    dst = repro.rerun_probe("smoke", profile="smoke", suffix="ndif-local", stage_cache=tmp_path / "stages",
                            overrides={"activations_backend": "ndif-local", **LIGHT_03})
    remote_record = json.loads((dst / "data" / "02_features.json").read_text())
    assert remote_record["key"] != record["key"]  # its own stages: the remote path really ran
    monkeypatch.setenv("HNEURON_CACHE", str(tmp_path / "stages"))
    _, ans_remote, _ = cett.load_features(cett.features_dir(remote_record))
    big = ans_local.float() >= 1e-3
    rel = ((ans_remote.float() - ans_local.float()).abs()[big] / ans_local.float()[big])
    assert float(rel.max()) < 5e-3, float(rel.max())  # float16 storage: 2**-11 relative, plus rounding paths
    h_local, h_remote = (pd.read_csv(r / "data" / "03_h_neurons.csv").flat_index for r in (src, dst))
    assert jaccard(h_local, h_remote) == 1.0


AVX2_ONLY = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


@pytest.mark.notebooks
@pytest.mark.real_model
@pytest.mark.network
def test_smoke_dataset_and_probe_run_under_avx2_kernels(monkeypatch):
    """01–03 of the smoke profile with oneDNN, ATen and MKL capped at AVX2 — on a machine with AVX-512 or AMX,
    other kernels than the main smoke run's — on an empty stage cache. Only what must hold on any processor
    is asserted: the notebooks run, both classes are filled, 03 writes its H-neurons. Which questions and
    neurons come out may differ between kernels and is not asserted."""
    import pandas as pd

    from hneuron_utils.workbook import repro

    for var, value in AVX2_ONLY.items():
        monkeypatch.setenv(var, value)
    with repro.isolated_stage_cache("hneuron-avx2-"):
        log = run.run("smoke", only=["00", "01", "02", "03"], run_name="smoke-avx2", log_output=False,
                      overrides={"figures_dir": None, **LIGHT_03})
    assert all(v["status"] == "ok" for v in log["notebooks"].values()) and len(log["notebooks"]) == 4
    assert {k: log["kernels"][k] for k in AVX2_ONLY} == AVX2_ONLY  # the kernels' settings reached the run log
    out = project_root() / "results" / "smoke-avx2" / "data"
    prof = config.load_profile("smoke")
    examples = pd.read_json(out / "01_examples.jsonl", lines=True)
    assert examples.groupby(["split", "class"]).size().to_dict() == {
        (s, c): prof[f"n_{s}_per_class"] for s in ("train", "test") for c in ("faithful", "hallucinated")}
    hn = pd.read_csv(out / "03_h_neurons.csv")
    assert len(hn) >= 1 and (hn.coefficient > 0).all()


def test_no_reference_to_files_outside_the_repository():
    import re

    root = project_root()
    files = list((root / "notebooks").glob("*.ipynb")) + list((root / "hneuron_utils").rglob("*.py")) + [root / "README.md"]
    bad = [f.name for f in files if re.search(r"\bSPEC\b(?!IAL)|shared/", f.read_text())]
    assert not bad, f"these cite files outside the repository: {bad}"
