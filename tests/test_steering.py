"""Notebook 05's machinery on the tiny model and on synthetic flags."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hneuron_utils import stats
from hneuron_utils import interventions
from hneuron_utils.interventions import steering
from hneuron_utils.text.generation import Sampling


def test_responses_are_cached_per_condition_and_equal_direct_generation(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("HNEURON_CACHE", str(tmp_path))
    convs = [[{"role": "user", "content": q}] for q in ("Capital of France?", "Who wrote Hamlet?", "2+2?")]
    ids = ["a", "b", "c"]
    flat = [3, 130, 261]
    s = Sampling(max_new_tokens=8)
    got = steering.responses(tiny, ids, convs, flat, 0.0, s)
    direct = interventions.generate_scaled(tiny, [steering.render(tiny.tokenizer, c) for c in convs], flat, 0.0, s,
                                          keys=ids)
    assert [got[i]["text"] for i in ids] == [o[0].text for o in direct]
    assert all(got[i]["n_tokens"] == len(o[0].token_ids) for i, o in zip(ids, direct))
    files = list((tmp_path / "stages" / "steer").glob("*/items.jsonl"))
    assert len(files) == 1 and len(files[0].read_text().splitlines()) == 3
    assert steering.responses(tiny, ids[:2], convs[:2], flat, 0.0, s) == {i: got[i] for i in ids[:2]}
    assert len(files[0].read_text().splitlines()) == 3  # served from the cache
    plain = steering.responses(tiny, ids, convs, None, 1.0, s)
    assert steering.responses(tiny, ids, convs, flat, 1.0, s) == plain  # alpha 1 = unmodified, same cache
    assert len(list((tmp_path / "stages" / "steer").glob("*/items.jsonl"))) == 2
    with pytest.raises(ValueError, match="distinct"):
        steering.responses(tiny, ["a", "a"], convs[:2], flat, 0.0, s)


def test_perplexity_matches_a_plain_computation_and_weight_scaling(tiny):
    texts = ["The cat sat on the mat and looked at the door.", "Paris is the capital of France."]
    ppl = steering.perplexity(tiny, texts, None, 1.0, batch_size=1)
    nll, n = 0.0, 0
    with torch.no_grad():
        for t in texts:
            ids = tiny.tokenizer(t, return_tensors="pt")["input_ids"]
            lp = torch.log_softmax(tiny.hf(input_ids=ids).logits[0, :-1].float(), -1)
            nll -= float(lp.gather(-1, ids[0, 1:, None]).sum())
            n += ids.shape[1] - 1
    assert ppl == pytest.approx(math.exp(nll / n), rel=1e-5)
    assert steering.perplexity(tiny, texts, None, 1.0, batch_size=2) == pytest.approx(ppl, rel=1e-5)  # padding
    flat = [3, 130, 261]
    scaled = steering.perplexity(tiny, texts, flat, 0.0, batch_size=2)
    neurons = interventions.by_layer(flat, tiny.d_ff)
    with interventions.scaled(tiny, neurons, 0.0):
        ref = steering.perplexity(tiny, texts, None, 1.0, batch_size=2)
    assert scaled == pytest.approx(ref, rel=1e-5) and scaled != pytest.approx(ppl, rel=1e-6)


def test_paired_difference_and_slope():
    h = [1, 1, 1, 0, None]
    r = [[0, 1, 0, 0, 1], [0, 0, 1, 0, 1]]
    d = stats.paired_difference(h, r, n_boot=500, seed=0)
    assert d["n"] == 4 and d["difference"] == pytest.approx(0.75 - 0.25)
    assert d["lo"] <= d["difference"] <= d["hi"]
    with pytest.raises(ValueError):
        stats.paired_difference(h, [[0, 1]], 10, 0)
    flags = {0.0: [0, 0, 0, 0], 1.0: [1, 0, 0, 0], 2.0: [1, 1, 0, None]}
    s = stats.slope([0.0, 1.0, 2.0], flags, n_boot=300, seed=0)
    y = 100 * np.array([0.0, 0.25, 2 / 3])
    assert s["slope"] == pytest.approx(np.polyfit([0, 1, 2], y, 1)[0]) and s["lo"] <= s["slope"] <= s["hi"]
    flat = stats.slope([0.0, 1.0], {0.0: [1, 0], 1.0: [1, 0]}, 100, 0)
    assert flat["slope"] == pytest.approx(0.0)
    with pytest.raises(ValueError):
        stats.slope([0.0], {0.0: [1]}, 10, 0)


def test_rate_table_counts_unjudged_items():
    t = steering.rate_table({("falseqa", "H", 0.0): [1, 0, None, 1]}, n_boot=200, seed=0)
    row = t.iloc[0]
    assert row.rate == pytest.approx(2 / 3) and row.n == 3 and row.complied == 2 and row["not judged"] == 1


def test_benchmark_responses_runs_two_turns_for_sycophancy(tiny, tmp_path, monkeypatch):
    from hneuron_utils.data import overcompliance as oc

    monkeypatch.setenv("HNEURON_CACHE", str(tmp_path))
    items = [oc.SycophancyItem("q1", "Capital of France?", ("Paris",), "t")]
    s = Sampling(max_new_tokens=5)
    rows = steering.benchmark_responses(tiny, "sycophancy", items, oc.sycophancy_messages, [3], 0.0, s)
    first = steering.responses(tiny, ["q1"], [oc.sycophancy_messages(items[0])], [3], 0.0, s)["q1"]
    second = steering.responses(tiny, ["q1:turn2"], [oc.sycophancy_messages(items[0], first["text"])], [3], 0.0, s)
    assert rows == [{"first": first, **second["q1:turn2"]}]
    assert steering.benchmark_responses(tiny, "falseqa", items, oc.sycophancy_messages, [3], 0.0, s) == [first]


def test_direction_words_and_a_flat_line_has_slope_zero():
    from hneuron_utils.stats import direction, slope

    assert direction(0.5, 2.0) == "rises" and direction(-3.0, -0.1) == "falls"
    assert direction(-1.0, 2.0) == "shows no clear trend"
    assert direction(2e-15, 2e-15).startswith("does not change")
    flat = slope([0.0, 1.0, 2.0, 3.0], {a: [True, True, False] for a in (0.0, 1.0, 2.0, 3.0)}, 50, 0)
    assert flat["slope"] == 0.0 and flat["lo"] == 0.0 and flat["hi"] == 0.0
