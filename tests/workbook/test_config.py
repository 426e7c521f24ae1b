import pytest
import yaml

from hneuron_utils.workbook import config
from hneuron_utils.paths import project_root


def test_default_profile_names_every_parameter():
    raw = yaml.safe_load((project_root() / "params" / "default.yaml").read_text())
    assert set(raw) == set(config.PARAM_NAMES)


@pytest.mark.parametrize("profile", sorted(p.stem for p in (project_root() / "params").glob("*.yaml")))
def test_every_profile_validates(profile):
    values = config.load_profile(profile)
    assert set(values) == set(config.PARAM_NAMES)


def test_smoke_overrides_default():
    assert config.load_profile("smoke")["model"] == "smollm2-135m-instruct"
    assert config.load_profile("default")["model"] == "qwen2.5-coder-1.5b-instruct"


def test_misspelt_key_in_profile_fails_and_names_valid_keys(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("modle: smollm2-135m-instruct\n")
    with pytest.raises(config.ConfigError) as e:
        config.load_profile(p)
    msg = str(e.value)
    assert "modle" in msg and "Did you mean 'model'" in msg and "max_new_tokens" in msg


def test_control_alphas_must_lie_on_the_alpha_grid(tmp_path):
    p = tmp_path / "grid.yaml"
    p.write_text("alphas: [0.0, 0.5, 1.0, 1.5]\n")  # the default's control grid {0, 1, 3} leaves this grid
    with pytest.raises(config.ConfigError, match="oc_control_alphas"):
        config.load_profile(p)
    p.write_text("alphas: [0.0, 0.5, 1.0, 1.5]\noc_control_alphas: [0.0, 1.5]\n")
    assert config.load_profile(p)["oc_control_alphas"] == [0.0, 1.5]


def test_unknown_profile_lists_known():
    with pytest.raises(config.ConfigError, match="Known profiles"):
        config.load_profile("no-such-profile")


@pytest.mark.parametrize("name,value,match", [
    ("seed", "0", "must be int"),
    ("seed", -1, ">= 0"),
    ("dtype", "fp8", "must be one of"),
    ("max_new_tokens", True, "got a bool"),
    ("model", None, "may not be null"),
    ("biomed_source", "standin-large", "'standin', 'standin_large' or the path"),
    ("oc_items", 150, "must be dict"),
    ("oc_items", {"falseqa": 0}, "positive integers"),
    ("oc_items", {"faithqa": 10}, "benchmark names"),
    ("oc_counterfactual_prompt", "ours", "must be one of"),
    ("oc_counterfactual_screen", "yes", "must be bool"),
    ("ft_train_layers", "last", "a positive integer or 'h_layers'"),
    ("ft_train_layers", 0, "must be > 0"),
])
def test_bad_values(name, value, match):
    with pytest.raises(config.ConfigError, match=match):
        config.validate_value(name, value)


def test_biomed_sources_accepted():
    for v in ("standin", "standin_large"):
        config.validate_value("biomed_source", v)


def test_literal_assignments():
    assert config.literal_assignments('a = 1\nb = "x"\nc = [1, 2]') == ["a", "b", "c"]
    assert config.literal_assignments("a = f(1)") is None
    assert config.literal_assignments("import os") is None
    assert config.literal_assignments("") is None


def test_from_notebook_uses_literal_cells_of_history():
    ns = {"In": ["", '# Parameters\nmodel = "tiny-random"\nseed = 3', "from x import y", 'prompt = "later"\nz = f()'],
          "model": "tiny-random", "seed": 3, "prompt": "later"}
    cfg = config.from_notebook(ns)
    assert cfg.model == "tiny-random" and cfg.seed == 3
    with pytest.raises(AttributeError, match="not declared"):
        _ = cfg.dtype


def test_from_notebook_ignores_a_readers_scratch_cells():
    # a reader types literal assignments in scratch cells, then re-runs the validation cell
    ns = {"In": ["", '# Parameters\nmodel = "tiny-random"\nseed = 3', "layer = 5", "seed = 99"],
          "model": "tiny-random", "seed": 99, "layer": 5}
    cfg = config.from_notebook(ns)
    assert cfg.seed == 3 and cfg.declared == frozenset({"model", "seed"})


def test_from_notebook_injected_cell_overrides_the_tagged_one():
    ns = {"In": ["", '# Parameters\nmodel = "tiny-random"\nseed = 3', '# Parameters\nseed = 7\n']}
    assert config.from_notebook(ns).seed == 7


def test_from_notebook_without_parameters_cell_fails():
    with pytest.raises(config.ConfigError, match="No parameters found"):
        config.from_notebook({"In": ["", "seed = 3"]})


def test_from_notebook_rejects_injected_typo():
    ns = {"In": ["", '# Parameters\nmodel = "tiny-random"', '# Parameters\nmodle = "smollm2-135m-instruct"\n'],
          "model": "tiny-random", "modle": "smollm2-135m-instruct"}
    with pytest.raises(config.ConfigError, match="Did you mean 'model'"):
        config.from_notebook(ns)


def test_origin_overrides_are_validated():
    from hneuron_utils.workbook.config import ConfigError, validate_value

    assert validate_value("origin_overrides", {"pool_size": 100, "faithful_min_correct": 6}) == \
        {"pool_size": 100, "faithful_min_correct": 6}
    with pytest.raises(ConfigError, match="may not set"):
        validate_value("origin_overrides", {"model": "x"})
    with pytest.raises(ConfigError, match="invalid entry"):
        validate_value("origin_overrides", {"pool_sise": 100})
    with pytest.raises(ConfigError, match="invalid entry"):
        validate_value("origin_overrides", {"pool_size": -1})
    with pytest.raises(ConfigError):
        validate_value("sft_freeze", ["embeddings", "everything"])


def test_smoke_profile_does_not_depend_on_bfloat16_kernels():
    """bfloat16 matmul kernels differ by processor and change the smoke run's samples and H-neurons; the smoke
    profile runs in float32 and trains the layers its own H-neurons fall in."""
    prof = config.load_profile("smoke")
    assert prof["dtype"] == "float32" and prof["ft_train_layers"] == "h_layers"
    config.validate_value("ft_train_layers", "h_layers")
