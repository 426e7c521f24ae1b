"""Notebook 05's machinery on the tiny model and on synthetic flags."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hneuron_utils import stats
from hneuron_utils import interventions
from hneuron_utils.interventions import steering
from hneuron_utils.text import generation
from hneuron_utils.text.generation import Sampling
from hneuron_utils.workbook import readouts


def test_responses_are_cached_per_condition_and_equal_direct_generation(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("HNEURON_CACHE", str(tmp_path))
    convs = [[{"role": "user", "content": q}] for q in ("Capital of France?", "Who wrote Hamlet?", "2+2?")]
    ids = ["a", "b", "c"]
    flat = [3, 130, 261]
    s = Sampling(max_new_tokens=8)
    got = steering.responses(tiny, ids, convs, flat, 0.0, sampling=s)
    direct = interventions.generate_scaled(tiny, [generation.render(tiny.tokenizer, c) for c in convs], flat, 0.0, s,
                                          keys=ids)
    assert [got[i]["text"] for i in ids] == [o[0].text for o in direct]
    assert all(got[i]["n_tokens"] == len(o[0].token_ids) for i, o in zip(ids, direct))
    files = list((tmp_path / "stages" / "steer").glob("*/items.jsonl"))
    assert len(files) == 1 and len(files[0].read_text().splitlines()) == 3
    assert steering.responses(tiny, ids[:2], convs[:2], flat, 0.0, sampling=s) == {i: got[i] for i in ids[:2]}
    assert len(files[0].read_text().splitlines()) == 3  # served from the cache
    plain = steering.responses(tiny, ids, convs, None, 1.0, sampling=s)
    assert steering.responses(tiny, ids, convs, flat, 1.0, sampling=s) == plain  # alpha 1 = unmodified, same cache
    assert len(list((tmp_path / "stages" / "steer").glob("*/items.jsonl"))) == 2
    with pytest.raises(ValueError, match="distinct"):
        steering.responses(tiny, ["a", "a"], convs[:2], flat, 0.0, sampling=s)


def _untimed(x):
    """A response (or {id: response}) without its generation time, which differs between runs."""
    if isinstance(x, dict) and "text" in x:
        return {k: _untimed(v) for k, v in x.items() if k != "seconds"}
    if isinstance(x, dict):
        return {k: _untimed(v) for k, v in x.items()}
    return x


def test_batched_responses_equal_per_condition_and_share_its_cache(tiny, tmp_path, monkeypatch):
    """All conditions in one batch give each condition's own responses (float32, greedy and sampled), are
    stored under the per-condition keys (a later per-condition call computes nothing), and only the
    missing (item, condition) pairs are computed."""
    convs = [[{"role": "user", "content": q}] for q in ("Capital of France?", "Who wrote Hamlet?", "2+2?", "Hi")]
    ids = ["a", "b", "c", "d"]
    conds = {"plain": (None, 1.0), "h0": ([3, 130, 261], 0.0), "h3": ([3, 130, 261], 3.0), "r0": ([9, 140, 300], 0.0)}
    for s in (Sampling(max_new_tokens=8), Sampling(do_sample=True, max_new_tokens=8)):
        monkeypatch.setenv("HNEURON_CACHE", str(tmp_path / str(s.do_sample)))
        steering.responses(tiny, ids[:1], convs[:1], *conds["h0"], sampling=s, seed=2)  # one pair already cached
        got = steering.responses_batched(tiny, ids, {c: convs for c in conds}, conds, s, seed=2, batch_size=6,
                                         items_per_call=3)
        files = sorted((tmp_path / str(s.do_sample) / "stages" / "steer").glob("*/items.jsonl"))
        assert len(files) == 4 and sum(len(f.read_text().splitlines()) for f in files) == 16
        fresh = tmp_path / f"ref{s.do_sample}"
        monkeypatch.setenv("HNEURON_CACHE", str(fresh))
        for c, (flat, a) in conds.items():
            assert _untimed(got[c]) == _untimed(steering.responses(tiny, ids, convs, flat, a, sampling=s, seed=2)), (s.do_sample, c)
        monkeypatch.setenv("HNEURON_CACHE", str(tmp_path / str(s.do_sample)))
        for c, (flat, a) in conds.items():
            assert steering.responses(tiny, ids, convs, flat, a, sampling=s, seed=2) == got[c]
        assert sum(len(f.read_text().splitlines()) for f in files) == 16  # served from the batched run's cache
    assert got["h0"] != got["plain"]  # the scaling changes something: the equalities are not vacuous
    with pytest.raises(ValueError, match="distinct"):
        steering.responses_batched(tiny, ["a", "a"], {c: convs[:2] for c in conds}, conds, s)


def test_all_responses_engines_agree_on_two_turns(tiny, tmp_path, monkeypatch):
    from hneuron_utils.data import overcompliance as oc

    items = {"sycophancy": [oc.SycophancyItem("q1", "Capital of France?", ("Paris",), "t"),
                            oc.SycophancyItem("q2", "Who wrote Hamlet?", ("Shakespeare",), "t")]}
    sets = {"H-neurons": [3, 130], "random 0": [9, 140]}
    s = {"sycophancy": Sampling(max_new_tokens=5)}
    out = {}
    for engine in steering.ENGINES:
        monkeypatch.setenv("HNEURON_CACHE", str(tmp_path / engine))
        out[engine] = steering.all_responses(tiny, items, sets, [0.0, 1.0, 3.0], s, seed=0, batch_size=8, timings={}, engine=engine)
    assert {k: [_untimed(r) for r in v] for k, v in out["batched"].items()} == \
        {k: [_untimed(r) for r in v] for k, v in out["per-condition"].items()} and len(out["batched"]) == 5
    assert all(r["seconds"] >= 0 and r["first"]["seconds"] >= 0 for v in out["batched"].values() for r in v)
    cost = steering.generation_cost(out["batched"], {"sycophancy: responses": 1.5})
    assert cost.iloc[0][["items", "conditions", "responses", "responses without a time"]].tolist() == [2, 5, 20, 0]
    assert cost.iloc[0]["generation seconds"] > 0 and cost.iloc[0]["wall seconds this run"] == 1.5
    with pytest.raises(ValueError, match="engine"):
        steering.all_responses(tiny, items, sets, [0.0], s, seed=0, batch_size=8, timings={}, engine="fast")


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
    rows = steering.benchmark_responses(tiny, "sycophancy", items, oc.sycophancy_messages, [3], alpha=0.0, sampling=s)
    first = steering.responses(tiny, ["q1"], [oc.sycophancy_messages(items[0])], [3], 0.0, sampling=s)["q1"]
    second = steering.responses(tiny, ["q1:turn2"], [oc.sycophancy_messages(items[0], first["text"])], [3], 0.0, sampling=s)
    assert rows == [{"first": first, **second["q1:turn2"]}]
    assert steering.benchmark_responses(tiny, "falseqa", items, oc.sycophancy_messages, [3], alpha=0.0, sampling=s) == [first]


def test_direction_words_and_a_flat_line_has_slope_zero():
    from hneuron_utils.stats import direction, slope

    assert direction(0.5, 2.0) == "rises" and direction(-3.0, -0.1) == "falls"
    assert direction(-1.0, 2.0) == "shows no clear trend"
    assert direction(2e-15, 2e-15).startswith("does not change")
    flat = slope([0.0, 1.0, 2.0, 3.0], {a: [True, True, False] for a in (0.0, 1.0, 2.0, 3.0)}, 50, 0)
    assert flat["slope"] == 0.0 and flat["lo"] == 0.0 and flat["hi"] == 0.0


def test_layer_matched_sets_keep_the_count_per_layer_and_avoid_h():
    h = [3, 5, 130, 300, 301]
    sets = steering.neuron_sets(h, 4 * 128, 2, 0, layer_matched=2, d_ff=128)
    assert list(sets) == ["H-neurons", "random 0", "random 1", "layer-matched random 0", "layer-matched random 1"]
    for name in ("layer-matched random 0", "layer-matched random 1"):
        cols = sets[name]
        assert sorted(c // 128 for c in cols) == sorted(c // 128 for c in h) and not set(cols) & set(h)
    assert sets["layer-matched random 0"] != sets["layer-matched random 1"]
    assert steering.neuron_sets(h, 4 * 128, 2, 0, layer_matched=2, d_ff=128) == sets  # seeded
    with pytest.raises(ValueError, match="d_ff"):
        steering.neuron_sets(h, 4 * 128, 1, 0, layer_matched=1)
    with pytest.raises(ValueError, match="non-H neurons"):
        steering.layer_matched_columns(list(range(4)), 4, 1, 0)


def test_slope_difference_is_paired_and_detects_a_real_difference():
    rng = np.random.default_rng(0)
    alphas = [0.0, 1.0, 2.0, 3.0]
    n = 200
    h = {a: list(rng.random(n) < 0.2 + 0.1 * a) for a in alphas}  # +10 points per unit alpha
    r = [{a: list(rng.random(n) < 0.4) for a in alphas} for _ in range(2)]  # flat
    d = stats.slope_difference(alphas, h, r, 500, 0)
    assert d["lo"] < d["difference"] < d["hi"] and d["lo"] > 0 and d["n"] == n
    assert d["difference"] == pytest.approx(stats.slope(alphas, h, 10, 0)["slope"]
                                            - np.mean([stats.slope(alphas, x, 10, 0)["slope"] for x in r]))
    assert d["detectable"] == pytest.approx(2.8016 * d["se"], rel=1e-3)
    same = stats.slope_difference(alphas, h, [h], 200, 0)  # H against itself: exactly 0 in every resample
    assert same["difference"] == 0 and same["lo"] == 0 and same["hi"] == 0
    s = stats.slope(alphas, h, 300, 0)
    assert s["se"] > 0 and s["detectable"] == pytest.approx(2.8016 * s["se"], rel=1e-3)
    null = stats.slope_difference(alphas, r[0], [r[1]], 300, 1)
    assert null["lo"] < 0 < null["hi"]  # two flat sets: no difference
    with pytest.raises(ValueError, match="aligned"):
        stats.slope_difference(alphas, h, [{a: v[:10] for a, v in r[0].items()}], 10, 0)


def test_slope_differences_table():
    alphas = [0.0, 1.0, 3.0]
    flags = {}
    for s in ("H-neurons", "random 0", "layer-matched random 0"):
        for a in alphas:
            flags[("falseqa", "none" if a == 1.0 else s, a)] = [a > 1 if s == "H-neurons" else False] * 6 if a != 1.0 else [False] * 6
    t = steering.slope_differences(flags, ["falseqa"], ["H-neurons", "random 0", "layer-matched random 0"], alphas, 50, seed=0)
    assert list(t.against) == ["random sets", "layer-matched random sets"] and (t.difference > 0).all()


def test_control_sets_on_their_own_grid():
    """Random sets at control_alphas (a subset): fewer conditions, rates and slopes over each set's own grid,
    and the H-minus-random slope fitted on the common (control) grid only."""
    sets = {"H-neurons": [1], "random 0": [2], "layer-matched random 0": [3]}
    alphas, ctrl = [0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 3.0]
    c = steering.conditions(sets, alphas, ctrl)
    assert len(c) == 1 + 3 + 2 + 2 and ("random 0", 2.0) not in c and ("H-neurons", 2.0) in c
    assert steering.conditions(sets, alphas) == steering.conditions(sets, alphas, alphas)
    with pytest.raises(ValueError, match="control_alphas"):
        steering.set_alphas("random 0", alphas, [0.0, 0.5])
    with pytest.raises(ValueError, match="control_alphas"):
        steering.set_alphas("random 0", alphas, [3.0])
    assert steering.set_alphas("random 0", alphas, [3.0, 0.0]) == [0.0, 1.0, 3.0]  # alpha 1 is shared: always in
    flags = {}
    for nset, a in c:
        # H: flat at 0, 1, 3 but a spike at alpha 2; controls flat
        flags[("falseqa", nset, a)] = [nset == "H-neurons" and a == 2.0] * 8
    r = steering.rates(flags, ["falseqa"], list(sets), alphas, 20, seed=0, control_alphas=ctrl)
    assert set(r[r.neurons == "random 0"].alpha) == {0.0, 1.0, 3.0} and len(r[r.neurons == "H-neurons"]) == 4
    diffs, slopes = steering.differences_and_slopes(flags, ["falseqa"], list(sets), alphas, 20, seed=0, control_alphas=ctrl)
    assert sorted(diffs.alpha) == [0.0, 3.0]
    assert slopes.set_index("neurons").alphas.to_dict() == {"H-neurons": "0 1 2 3", "random 0": "0 1 3",
                                                           "layer-matched random 0": "0 1 3"}
    assert slopes.set_index("neurons").slope["H-neurons"] != 0  # the spike at 2 tilts the 4-point fit
    t = steering.slope_differences(flags, ["falseqa"], list(sets), alphas, 20, seed=0, control_alphas=ctrl)
    assert (t.alphas == "0 1 3").all() and (t.difference == 0).all()  # on the common grid H is flat too


def test_read_slope_differences_chooses_words_by_the_interval():
    import pandas as pd

    t = pd.DataFrame([
        {"benchmark": "falseqa", "against": "random sets", "sets": 3, "difference": 4.0, "lo": 1.0, "hi": 7.0, "n": 150,
         "se": 1.5, "detectable": 4.2},
        {"benchmark": "jailbreak", "against": "random sets", "sets": 3, "difference": 1.0, "lo": -2.0, "hi": 4.0,
         "n": 150, "se": 1.5, "detectable": 4.2}])
    t.loc[2] = {"benchmark": "counterfactual", "against": "random sets", "sets": 3, "difference": float("nan"),
                "lo": float("nan"), "hi": float("nan"), "n": 0, "se": float("nan"), "detectable": float("nan")}
    a, b, c = readouts.read_slope_differences(t)
    assert "not computable" in c and "nan" not in c
    assert "the H-neuron slope is higher than the random sets'" in a and "detectable" not in a
    assert "no difference from the random sets detectable (smallest detectable ±4.2" in b
    s = pd.DataFrame([{"benchmark": "falseqa", "neurons": "H-neurons", "slope": 1.0, "lo": -2.0, "hi": 3.0, "n": 150,
                       "se": 1.2, "detectable": 3.4}, {"benchmark": "falseqa", "neurons": "random 0", "slope": 0.5,
                                                       "lo": -1, "hi": 2, "n": 150, "se": 1, "detectable": 2.8}])
    assert "no effect detectable at n = 150 (smallest detectable slope ±3.4" in readouts.read_slopes(s)[0]


def test_readings_mark_a_benchmark_whose_judge_is_not_validated():
    import pandas as pd

    s = pd.DataFrame([{"benchmark": "jailbreak", "neurons": "H-neurons", "slope": 5.0, "lo": 2.0, "hi": 8.0, "n": 100,
                       "se": 1.5, "detectable": 4.2}])
    assert readouts.read_slopes(s)[0].startswith("jailbreak: with the H-neurons scaled, compliance rises")
    marked = readouts.read_slopes(s, {"jailbreak": "judge not validated (κ = 0.41)"})[0]
    assert marked.startswith("[judge not validated (κ = 0.41): not a finding] jailbreak")
    assert readouts.read_slopes(s, {"jailbreak": "validated"}) == readouts.read_slopes(s)


def test_knowledge_table_splits_by_closed_book_knowledge():
    t = steering.knowledge_table([True, False, None, True, True, True], [True, True, False, False, True, False], 200, 0)
    rows = t.set_index("items")
    assert rows.loc["all items", "n"] == 5 and rows.loc["all items", "not judged"] == 1
    assert rows.loc["knows the real-world answer", "compliance at α = 1"] == pytest.approx(2 / 3)
    assert rows.loc["does not know it", "compliance at α = 1"] == 1.0
    assert rows.loc["all items", "in 20–80%"]  # 4 of 5 = 0.8 lies in 20–80%
    text = readouts.read_knowledge(t, "anti_compliance")
    assert "3 of 6 items" in text and "n = 3" in text
    with pytest.raises(ValueError, match="one knowledge flag"):
        steering.knowledge_table([True], [True, False], 10, 0)
    screened = readouts.read_knowledge(t, "unreliable_hint", screen={"screened": 40, "known": 6})
    assert screened.startswith(text.replace("anti_compliance", "unreliable_hint"))
    assert screened.endswith("6 known among the first 40 of the pool (15.0%).")
    blank = readouts.read_knowledge(steering.knowledge_table([None, None], [True, True], 50, 0), "paper")
    assert "none of the 2 unmodified answers could be judged" in blank and "nan" not in blank


def test_screen_known_stops_at_n_and_counts_what_it_read(monkeypatch):
    """Items named k* are 'known'; the screen reads chunk by chunk, in order, and stops at the n-th known."""
    from types import SimpleNamespace

    calls = []

    def fake(loaded, items, seed, batch_size, max_new_tokens=16):
        calls.append([it.id for it in items])
        return [{"text": "Paris" if it.id.startswith("k") else "Lyon", "seconds": 0.5} for it in items]

    monkeypatch.setattr(steering, "closed_book_answers", fake)
    pool = [SimpleNamespace(id=i, world_answer="paris") for i in ["u0", "k1", "u2", "u3", "k4", "k5", "u6", "k7"]]
    kept, c = steering.screen_known(None, pool, 2, 0, 8, chunk=3, progress=False)
    assert [it.id for it in kept] == ["k1", "k4"] and calls == [["u0", "k1", "u2"], ["u3", "k4", "k5"]]
    assert c == {"available": 8, "screened": 5, "known": 2, "used": 2, "asked": 6, "screen seconds": 3}
    short, c = steering.screen_known(None, pool, 9, 0, 8, chunk=3, progress=False)  # the pool runs out
    assert len(short) == 4 and c["screened"] == 8 and c["used"] == 4 and c["asked"] == 8
    with pytest.raises(ValueError):
        steering.screen_known(None, pool, 0, 0, 8)


def test_side_effects_have_intervals_and_no_change_at_alpha_one(tiny, tmp_path, monkeypatch):
    from types import SimpleNamespace

    monkeypatch.setenv("HNEURON_CACHE", str(tmp_path))
    recs = [SimpleNamespace(id=f"q{i}", question=q, answers=("paris",)) for i, q in
            enumerate(["Capital of France?", "Where is the Louvre?", "Which city hosts the Eiffel tower?"])]
    sets = {"H-neurons": [3, 130, 261], "random 1": [5, 140, 300]}
    t = steering.side_effects(tiny, recs, ["The cat sat on the mat.", "A tiny test passage of text."], sets,
                              [0.0, 1.0, 3.0], resp={}, seed=0, batch_size=8, n_boot=50)
    assert list(t.neurons.unique()) == ["H-neurons", "random 1"] and len(t) == 6
    one = t[t.alpha == 1.0]
    assert (one["accuracy change"] == 0).all() and (one["perplexity change"] == 0).all()
    assert (t["perplexity lo"] <= t.perplexity + 1e-9).all() and (t.perplexity <= t["perplexity hi"] + 1e-9).all()
    zero = t[(t.alpha == 0.0) & (t.neurons == "H-neurons")].iloc[0]
    assert zero.perplexity != pytest.approx(one.iloc[0].perplexity)  # scaling three neurons of a random model moves it
    lines = readouts.read_side_effects(t)
    assert len(lines) == 4 and all("n = 3" in x and "n = 2 passages" in x for x in lines)


def test_text_nll_pools_to_the_perplexity(tiny):
    texts = ["The cat sat on the mat.", "Another, somewhat longer passage of plain text for the model."]
    nll, cnt = steering.text_nll(tiny, texts, [3, 130], 0.5, batch_size=1)
    assert len(nll) == 2 and (cnt > 0).all()
    assert math.exp(nll.sum() / cnt.sum()) == pytest.approx(steering.perplexity(tiny, texts, [3, 130], 0.5, batch_size=2),
                                                            rel=1e-5)


def test_edge_note_marks_ceiling_and_floor():
    assert "ceiling" in readouts.edge_note(0.99) and "floor" in readouts.edge_note(0.01)
    assert readouts.edge_note(0.5) == "" and readouts.edge_note(0.94) == ""
