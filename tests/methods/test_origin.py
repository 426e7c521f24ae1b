"""The origin analysis: the tuned model's identification run and the backward-transfer pools."""

import pytest

from hneuron_utils.workbook import config
from hneuron_utils.training import origin
from hneuron_utils.workbook import subruns


def test_identification_params_apply_overrides_and_set_the_model():
    p = subruns.identification_params("smoke", overrides={"pool_size": 123}, model="/some/tuned/model",
                                      run_name="smoke-origin")
    assert p["pool_size"] == 123 and p["model"] == "/some/tuned/model" and p["run_name"] == "smoke-origin"
    assert p["figures_dir"] is None and p["n_samples"] == config.load_profile("smoke")["n_samples"]
    with pytest.raises(config.ConfigError):
        subruns.identification_params("smoke", overrides={"pool_size": 0}, model="m", run_name="r")


def test_triviaqa_transfer_pool_excludes_the_probes_examples():
    params = config.load_profile("default")
    full = origin.transfer_pool("triviaqa", params, None, 0)
    some = [r.id for r in full.records[:50]]
    pool = origin.transfer_pool("triviaqa", params, None, 0, exclude_ids=some)
    assert not set(some) & {r.id for r in pool.records}
    assert len(pool.records) == len(full.records) - 50
    small = origin.transfer_pool("triviaqa", params, 200, 0, exclude_ids=some)
    assert len(small.records) <= 200 and not set(some) & {r.id for r in small.records}
    assert origin.transfer_pool("nq_open", params, 100, 0).label == "NQ-Open"


def test_rule_and_sampling_come_from_the_run_parameters():
    p = config.load_profile("default")
    r, s = origin.rule(p), origin.sampling(p)
    assert (r.n_samples, r.faithful_min, r.hallucinated_max) == (10, 10, 0)
    assert s.do_sample and s.temperature == 1.0 and s.top_k == 50 and s.top_p == 0.9
