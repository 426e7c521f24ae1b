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


def test_answer_only_format():
    assert origin.answer_only("Pudding") and origin.answer_only("  The Catcher in the Rye ")
    assert not origin.answer_only("") and not origin.answer_only("Paris\nThe capital of France is Paris.")
    assert not origin.answer_only(" ".join(["word"] * (origin.ANSWER_ONLY_MAX_WORDS + 1)))


def test_tuning_check_pairs_the_models_on_the_same_questions(monkeypatch):
    from types import SimpleNamespace

    from hneuron_utils.data import QARecord
    from hneuron_utils.data import labelling

    recs = [QARecord(id=f"q{i}", question=f"Question {i}?", answers=("Paris",), source="triviaqa") for i in range(60)]
    base = SimpleNamespace(name="base", tokenizer=SimpleNamespace(chat_template=None))
    tuned = SimpleNamespace(name="tuned", tokenizer=SimpleNamespace(chat_template="{{ x }}"))

    def fake(loaded, records, max_new_tokens, batch_size, **kw):
        out = {}
        for k, r in enumerate(records):
            if loaded.name == "tuned":  # stops, one line, right on 2 in 3
                out[r.id] = {"text": "Paris" if k % 3 else "Lyon", "stopped": True}
            elif kw["style"] == "chat":  # the base model runs on and on under the chat prompt
                out[r.id] = {"text": "Paris is a city.\nIt is " + "very " * 12 + "old", "stopped": k % 4 == 0}
            else:  # base prompt: right on 1 in 2
                out[r.id] = {"text": "Paris" if k % 2 else "Rome", "stopped": True}
        return out

    monkeypatch.setattr(labelling, "greedy_answers", fake)
    check = origin.tuning_check(base, tuned, recs, max_new_tokens=50, batch_size=8, n_boot=500, seed=0)
    assert base.tokenizer.chat_template == "{{ x }}"  # borrowed
    assert list(check.measure) == list(origin.TUNING_CHECKS) and (check.n == 60).all()
    r = check.set_index("measure")
    assert r.loc[origin.TUNING_CHECKS[0], "base"] == 0.25 and r.loc[origin.TUNING_CHECKS[0], "tuned"] == 1.0
    assert r.loc[origin.TUNING_CHECKS[1], "base"] == 0.0
    assert r.loc[origin.TUNING_CHECKS[2], "tuned − base"] == pytest.approx(40 / 60 - 0.5)
    assert check.passed.all()
    monkeypatch.setattr(labelling, "greedy_answers", lambda loaded, records, *a, **kw: {
        r.id: {"text": "Paris", "stopped": True} for r in records})  # the same answers: nothing rises
    same = origin.tuning_check(base, tuned, recs, max_new_tokens=50, batch_size=8, n_boot=500, seed=0)
    assert same.passed.tolist() == [False, False, True]
    from hneuron_utils.workbook import readouts

    assert "inconclusive" in readouts.read_tuning_check(same)[-1]


def test_reference_tuning_is_skipped_or_refused_before_any_training(monkeypatch):
    from types import SimpleNamespace

    from hneuron_utils.training import sft

    def no_training(*a, **k):
        raise AssertionError("nothing may be tuned here")

    monkeypatch.setattr(sft, "tune", no_training)
    cfg = SimpleNamespace(**config.load_profile("smoke"))
    assert origin.make_reference(SimpleNamespace(**{**vars(cfg), "sft_reference_seed": None})) == (None, None)
    assert origin.make_reference(SimpleNamespace(**{**vars(cfg), "tuned_model": "some/instruct"})) == (None, None)
    with pytest.raises(ValueError, match="must differ from seed"):
        origin.make_reference(SimpleNamespace(**{**vars(cfg), "sft_reference_seed": cfg.seed}))


def test_reference_tuning_differs_from_the_pair_only_in_its_seed():
    from dataclasses import asdict
    from types import SimpleNamespace

    cfg = SimpleNamespace(**config.load_profile("smoke"))
    pairs = [("q", "a")]
    first, second = origin._tune_config(cfg, pairs, seed=cfg.seed), origin._tune_config(cfg, pairs, seed=7)
    diff = {k for k, v in asdict(first).items() if asdict(second)[k] != v}
    assert diff == {"seed"}
