"""The paper-scale cost table: its arithmetic and that docs/workbook-notes.md shows what it computes."""

from hneuron_utils.workbook import config, costs
from hneuron_utils.paths import project_root


def test_stage_costs_follow_the_profile_and_the_shape():
    shape = costs.Shape("m", parameters=1e9, layers=10, d_ff=100)
    t = costs.stage_costs("paper-llama-3.1-8b", sequence_tokens=50.0, shape=shape).set_index("stage")
    p = config.load_profile("paper-llama-3.1-8b")
    samp = t.loc["01 sampling (OpenAI-compatible server)"]
    assert samp.requests == 8837 * p["n_samples"]
    assert samp.tokens == 8837 * p["n_samples"] * p["max_new_tokens"] + 8837 * 50
    cett = t.loc["02 CETT pass (NDIF, float16 features back)"]
    n_ex = 2 * (p["n_train_per_class"] + p["n_test_per_class"])
    assert cett.tokens == n_ex * 50 and abs(cett["GB returned"] - n_ex * 2 * 10 * 100 * 2 / 1e9) < 0.05
    assert abs(cett.PFLOP - 2 * 1e9 * n_ex * 50 / 1e15) < 0.05
    sup = t.loc["03 suppression rule (NDIF generate, α write at every step)"]
    passes = 1 + len(p["probe_Cs"])
    assert not p["screen"] and sup.tokens == (p["suppress_eval_size"] * passes + 250) * (50 + 16)
    assert sup.requests >= passes  # at least one request per pass (unmodified, and each C at α = 0)


def test_the_notes_show_the_computed_costs():
    text = (project_root() / costs.NOTES).read_text()
    block = text.split(costs.BEGIN, 1)[1].split(costs.END, 1)[0].strip()
    assert block == costs.markdown(costs.costs(), costs.default_run_lengths()["sequence tokens"])
