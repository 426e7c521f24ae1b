"""Notebook 09: concept vectors, per-row injection through nnsight, the rule judges and the tables."""

import numpy as np
import pandas as pd
import pytest
import torch

from hneuron_utils.introspection import analysis, confidence, injection, trials
from hneuron_utils.workbook import readouts


def test_depth_layers():
    assert injection.depth_layers(28, [0.333, 0.5, 0.667, 0.833]) == [8, 13, 18, 22]
    assert injection.depth_layers(3, [1.0]) == [2]
    with pytest.raises(ValueError, match="repeated"):
        injection.depth_layers(3, [0.3, 0.4])
    with pytest.raises(ValueError, match="depth fractions"):
        injection.depth_layers(28, [0.0])


def test_assistant_start_marks_the_first_token_of_the_assistant_turn(tiny):
    prompt, start = injection.assistant_start(tiny.tokenizer, trials.detection_messages(3))
    ids = tiny.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert "Trial 3:" in prompt and 0 < start < len(ids)
    before = tiny.tokenizer.apply_chat_template(trials.detection_messages(3), tokenize=False, add_generation_prompt=False)
    assert tiny.tokenizer.decode(ids[:start]) == before


def _injected_rows(tiny):
    """Four prompts (two families sharing a long prefix) with mixed layers, vectors and none."""
    g = np.random.default_rng(0)
    rows = [(2, None, None), (5, 0, g.standard_normal(tiny.d_model) * 3), (7, 2, g.standard_normal(tiny.d_model) * 3),
            (11, 1, g.standard_normal(tiny.d_model) * 0.5)]
    prompts, starts = zip(*[injection.assistant_start(tiny.tokenizer, trials.detection_messages(k)) for k, _, _ in rows])
    return list(prompts), list(starts), [r[1] for r in rows], [r[2] for r in rows]


def test_batched_injection_equals_one_prompt_hook_reference(tiny, monkeypatch):
    prompts, starts, layers, vecs = _injected_rows(tiny)
    outs = injection.injected_generate(tiny, prompts, starts, layers, vecs, max_new_tokens=8, batch_size=3, progress=False)
    for p, s, layer, v, o in zip(prompts, starts, layers, vecs, outs):
        assert o.token_ids == injection.hook_generate(tiny, p, s, layer, v, max_new_tokens=8)
    # continuous batching: rows that stop early leave, queued prompts join a running batch
    stop = outs[1].token_ids[2]  # a token some rows generate: make it an end-of-turn token
    monkeypatch.setattr(type(tiny), "stop_token_ids", lambda self: [stop])
    many = [(p, s, layer, v) for p, s, layer, v in zip(prompts, starts, layers, vecs)] * 2
    got = injection.injected_generate(tiny, *map(list, zip(*many)), max_new_tokens=8, batch_size=2, progress=False)
    want = [injection.hook_generate(tiny, p, s, layer, v, max_new_tokens=8) for p, s, layer, v in many]
    assert [g.token_ids for g in got] == want
    assert any(len(w) < 8 for w in want) and any(len(w) == 8 for w in want)
    plain = injection.injected_generate(tiny, prompts, starts, [None] * 4, [None] * 4, max_new_tokens=8, progress=False)
    assert [o.token_ids for o in outs] != [o.token_ids for o in plain]  # the injections change the text
    assert plain[0].token_ids == outs[0].token_ids  # the uninjected row is untouched by its neighbours


def _hook_logits(tiny, ids, layer, v, start):
    def hook(mod, args, out):
        h = injection._hidden(out).clone()
        h[:, start:] += torch.as_tensor(v, dtype=h.dtype)
        return (h, *out[1:]) if isinstance(out, tuple) else h

    handle = tiny.hf.get_submodule(tiny.layers_path)[layer].register_forward_hook(hook)
    try:
        with torch.no_grad():
            return tiny.hf(input_ids=ids).logits
    finally:
        handle.remove()


def test_injection_covers_exactly_the_positions_from_the_assistant_turn(tiny):
    prompts, starts, layers, vecs = _injected_rows(tiny)
    p, s, layer, v = prompts[3], starts[3], layers[3], vecs[3]
    ids = torch.tensor([tiny.tokenizer(p, add_special_tokens=False)["input_ids"]])
    fwd = injection.injection_forward(tiny, [None, layer], [None, v], [0, s])
    with torch.no_grad():
        got = fwd(tiny.hf, rows=[1], input_ids=ids, attention_mask=torch.ones_like(ids),
                  position_ids=torch.arange(ids.shape[1])[None]).logits
        plain = tiny.hf(input_ids=ids).logits
    assert torch.allclose(got, _hook_logits(tiny, ids, layer, v, s), atol=1e-5)
    assert torch.allclose(got[:, :s], plain[:, :s], atol=1e-6)      # before the assistant turn: untouched
    assert not torch.allclose(got[:, s:], plain[:, s:], atol=1e-3)  # from it on: changed
    assert not torch.allclose(got, _hook_logits(tiny, ids, layer, v, 0), atol=1e-3)


def test_injection_forward_checks_its_inputs(tiny):
    with pytest.raises(ValueError, match="out of range"):
        injection.injection_forward(tiny, [99], [np.zeros(tiny.d_model)], [0])
    with pytest.raises(ValueError, match="d_model"):
        injection.injection_forward(tiny, [0], [np.zeros(3)], [0])
    with pytest.raises(ValueError, match="one entry"):
        injection.injection_forward(tiny, [0, None], [np.zeros(tiny.d_model)], [0, 0])


def test_concept_vectors_are_the_word_minus_the_baseline_mean(tiny, tmp_path, monkeypatch):
    from hneuron_utils.text.generation import chat_prompt

    monkeypatch.setenv("HNEURON_CACHE", str(tmp_path))
    words, base = ["volcanoes", "bread"], ["tables", "cups", "doors"]
    cv = injection.concept_vectors(tiny, words, base, [0, 2], batch_size=2)
    acts = injection.last_token_residuals(tiny, [chat_prompt(tiny.tokenizer, injection.CONCEPT_PROMPT.format(word=w))
                                                 for w in words + base], [0, 2], batch_size=5)
    np.testing.assert_allclose(cv.vectors, acts[:2] - acts[2:].mean(0), atol=1e-4)
    np.testing.assert_allclose(cv.residual_norm, np.median(np.linalg.norm(acts[2:], axis=-1), 0), rtol=1e-5)
    assert np.isclose(np.linalg.norm(cv.scaled(1, 2, 0.5)), 0.5 * cv.residual_norm[1], rtol=1e-5)
    again = injection.concept_vectors(tiny, words, base, [0, 2])  # from the cache
    np.testing.assert_array_equal(again.vectors, cv.vectors)
    with pytest.raises(ValueError, match="overlap"):
        injection.concept_vectors(tiny, words, ["bread", "cups"], [0])


def test_random_direction_is_a_seeded_unit_vector():
    a, b = injection.random_direction(64, 0, "x"), injection.random_direction(64, 0, "x")
    np.testing.assert_array_equal(a, b)
    assert np.isclose(np.linalg.norm(a), 1) and not np.allclose(a, injection.random_direction(64, 0, "y"))


def test_grid_counts_every_condition():
    g = trials.grid(3, [1, 2], [0.5, 1.0, 2.0])
    counts = g.condition.value_counts().to_dict()
    assert counts == {"concept": 18, "random": 18, "neutral": 18, "none": 3, "neutral-none": 1}
    assert g.trial.is_unique and set(g[g.condition == "none"].k) == {1, 2, 3}


def test_run_trials_caches_and_resumes(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("HNEURON_CACHE", str(tmp_path))
    cv = injection.concept_vectors(tiny, ["volcanoes", "bread"], ["tables", "cups", "doors"], [1, 2])
    g = trials.grid(2, [1, 2], [1.0])
    done = trials.run_trials(tiny, g, cv, 0, 5, batch_size=16, progress=False)
    assert len(done) == len(g) and done.response.map(lambda t: isinstance(t, str)).all()
    calls = []
    monkeypatch.setattr(injection, "injected_generate", lambda *a, **k: calls.append(1) or [])
    again = trials.run_trials(tiny, g, cv, 0, 5, batch_size=16, progress=False)
    assert calls == [] and again.response.tolist() == done.response.tolist()
    # each row's response is the one its own injection gives alone
    r = g[g.condition == "random"].iloc[0]
    layer, v = trials.row_injection(r, cv, 0)
    p, s = injection.assistant_start(tiny.tokenizer, trials.detection_messages(int(r.k)))
    alone = injection.hook_generate(tiny, p, s, layer, v, max_new_tokens=5)
    assert tiny.tokenizer.decode(alone, skip_special_tokens=True).strip() == done.set_index("trial").response[r.trial]


@pytest.mark.parametrize("text,claim", [
    ("Yes, I detect an injected thought. It is about the ocean.", True),
    ("I detect an injected thought about bread.", True),
    ("I notice something about volcanoes.", True),
    ("The injected thought is about love.", True),
    ("I don't detect an injected thought.", False),
    ("No, I do not detect anything.", False),
    ("I am sorry, but I am not able to detect injected thoughts.", False),
    ("I'm sorry, but I cannot assist with that.", False),
    ("volcan volcan volcan volcan", False),
    ("", False),
    ("I detect no injected thought.", False),
    ("I notice nothing unusual.", False),
    ("Do I detect an injected thought? No, I do not.", False),
    ("Yes, let's begin.", False),
    ("I don\u2019t detect anything.", False),
    ("Okay. Yes, I detect a thought about bread.", True),
    ("Trial 4: Do you detect an injected thought? If so, what is it about?", False),
    ("I have detected a camera camera camera", True),
])
def test_claims_detection(text, claim):
    assert trials.claims_detection(text) is claim


def test_detect_and_name_needs_the_claim_first():
    c = trials.Concept("bread", ())
    assert trials.detects_and_names("Yes, I detect an injected thought about bread.", c)
    assert trials.detects_and_names("Yes, bread bread bread", c)
    assert not trials.detects_and_names("Bread. Yes, I detect it.", c)  # the word blurted before any claim
    assert not trials.detects_and_names("I do not detect anything, but I like bread.", c)


def test_names_concept_matches_words_singulars_and_synonyms():
    c = trials.Concept("volcanoes", ("lava",))
    assert trials.names_concept("I think of a volcano.", c)
    assert trials.names_concept("Hot LAVA flows.", c)
    assert trials.names_concept("Volcanoes erupt", c)
    assert not trials.names_concept("volcanology is a science", c)
    assert trials.names_concept("berries", trials.Concept("berries", ())) and trials.names_concept("a berry", trials.Concept("berries", ()))
    assert not trials.names_concept("I see nothing.", c)


@pytest.mark.parametrize("text,ok", [
    ("Yes, I detect an injected thought. It is about the ocean.", True),
    ("volcan volcan volcan volcan volcan volcan", False),
    ("111111111111111111111", False),
    ("Yes, bread bread bread bread bread bread bread", False),
    ("I can't tell.", True),
    ("Ok.", True),
    ("No.", True),
    ("I detect nothing.", True),
    ("", False),
    ("!!! ??? ...", False),
])
def test_coherence_rule(text, ok):
    assert analysis.coherent(text) is ok


@pytest.mark.parametrize("text,value", [("80", 80.0), ("I am 95% confident.", 95.0), ("The answer is 100.", 100.0),
                                        ("150", None), ("very confident", None), ("I'd say 72.5", 72.5)])
def test_parse_confidence(text, value):
    assert confidence.parse_confidence(text) == value


def _judged(shuffle: bool = True):
    rows = []
    for c in range(4):
        rows.append({"trial": f"none:{c}", "condition": "none", "concept": c, "layer": None, "strength": 0.0,
                     "claims": c == 0, "names": False, "detect_and_name": False, "coherent": True})
        for cond in ("concept", "random", "neutral"):
            hit = cond == "concept" and c < 3
            rows.append({"trial": f"{cond}:{c}", "condition": cond, "concept": c, "layer": 5, "strength": 1.0,
                         "claims": hit or cond == "random", "names": hit or (cond == "neutral" and c == 0),
                         "detect_and_name": hit, "coherent": True})
    df = pd.DataFrame(rows)
    return df.sample(frac=1, random_state=3).reset_index(drop=True) if shuffle else df  # pairing must not rely on order


def test_cell_table_rates_and_paired_differences():
    cells = analysis.cell_table(_judged(), 200, 0).set_index(["condition", "measure"])
    assert cells.loc[("concept", "detect_and_name"), "rate"] == 0.75
    assert cells.loc[("concept", "detect_and_name"), "minus random"] == 0.75
    assert cells.loc[("concept", "claims"), "minus random"] == -0.25
    assert cells.loc[("concept", "claims"), "minus none"] == 0.5
    assert cells.loc[("random", "claims"), "rate"] == 1.0 and cells.loc[("random", "claims"), "n"] == 4
    best = analysis.best_cell(cells.reset_index())
    assert best.layer == 5 and best.rate == 0.75
    c = analysis.control_rates(_judged(), 200, 0).set_index("measure")
    assert c.loc["claims", "positive"] == 1 and c.loc["claims", "n"] == 4
    assert cells.loc[("concept", "detect_and_name"), "adjusted lo"] <= cells.loc[("concept", "detect_and_name"), "minus random lo"]


def test_leak_table_pairs_concepts():
    t = analysis.leak_table(_judged(), 200, 0).set_index("question")
    assert t.loc["detection", "names the concept"] == 0.75 and t.loc["neutral request", "names the concept"] == 0.25
    assert t.loc["detection minus neutral", "names the concept"] == 0.5 and t.loc["detection minus neutral", "concepts"] == 4
    assert "never named" in readouts.read_leak(analysis.leak_table(_judged().assign(names=False), 200, 0))[0]


def test_judge_agreement_reruns_the_rules_on_the_labelled_text():
    concepts = [trials.Concept("bread", ())]
    labels = pd.DataFrame({"condition": ["concept", "concept", "none", "none"], "word": ["bread"] * 4,
                           "response": ["Yes, I detect bread in my thoughts today.", "bread bread bread bread",
                                        "No, I do not detect anything at all.", "Hmm, something feels odd today."],
                           "claims": [True, False, False, True], "names": [True, True, False, False],
                           "coherent": [True, False, True, True]})
    a = analysis.judge_agreement(labels, concepts).set_index(["responses", "judge"])
    assert a.loc[("all", "names"), "agreement"] == 1.0 and a.loc[("all", "coherent"), "kappa"] == 1.0
    assert a.loc[("all", "claims"), "agreement"] == 0.75  # the reference label reads a claim in "something feels odd"
    assert a.loc[("all", "claims"), "majority_baseline"] == 0.5
    assert a.loc[("all", "claims"), "kappa"] < 0.6 <= a.loc[("all", "names"), "kappa"]
    with pytest.raises(ValueError, match="unknown concept"):
        analysis.judge_agreement(labels.assign(word="lava"), concepts)
    with pytest.raises(ValueError, match="lack a label"):
        analysis.judge_agreement(labels.assign(names=[True, None, False, False]), concepts)


def test_alpha_table_pairs_by_item():
    conf = pd.DataFrame({"id": ["a", "b", "c"] * 2, "neurons": ["H-neurons"] * 6, "alpha": [1.0] * 3 + [0.0] * 3,
                         "confidence": [90, 50, None, 70, 40, 10]})
    t = confidence.alpha_table(conf, {"a": 0, "b": 1, "c": 1}, 200, 0).set_index("alpha")
    assert t.loc[1.0, "n"] == 2 and t.loc[1.0, "no number"] == 1
    assert t.loc[0.0, "change from α = 1"] == pytest.approx(-15.0)  # only a and b are parsed at both
    assert t.loc[1.0, "auroc (wrong vs right)"] == 1.0


def test_smallest_detectable_matches_the_bootstrap_threshold():
    # n = 50: the interval leaves 0 from 4 positives on ((46/50)^50 < 0.025 < (47/50)^50); P(≥ 4) = 0.8 at p ≈ 0.11
    assert 0.10 < analysis.smallest_detectable(50) < 0.12
    assert analysis.smallest_detectable(50) > analysis.smallest_detectable(200) > 0


def test_versus_random_pairs_by_answer():
    conf = pd.DataFrame({"id": ["a", "b", "c"] * 3, "neurons": ["H-neurons"] * 6 + ["random 0"] * 3,
                         "alpha": [1.0] * 3 + [0.0] * 6, "confidence": [90, 50, 60, 70, 40, None, 80, 50, 10]})
    v = confidence.versus_random(conf, 200, 0)
    assert v.alpha.tolist() == [0.0] and v.n.tolist() == [2]
    assert v["H minus random"].iloc[0] == pytest.approx(-10.0)


def test_figures_draw_from_saved_tables(tmp_path):
    from hneuron_utils.workbook import figures

    cells = analysis.cell_table(_judged(), 50, 0)
    cells.to_csv(tmp_path / "09_cells.csv", index=False)
    conf = pd.DataFrame({"id": ["a", "b", "c"] * 2, "neurons": ["H-neurons"] * 6, "alpha": [1.0] * 3 + [0.0] * 3,
                         "confidence": [90, 50, None, 70, 40, 10]})
    confidence.alpha_table(conf, {"a": 0, "b": 1, "c": 1}, 50, 0).to_csv(tmp_path / "09_confidence_alpha.csv", index=False)
    conf = conf.assign(p_yes=[0.9, 0.4, 0.2, 0.8, 0.5, 0.3])
    pd.concat([confidence.alpha_table(conf, {"a": 0, "b": 1, "c": 1}, 50, 0, m) for m in ("confidence", "p_yes")]).to_csv(
        tmp_path / "09_confidence_alpha.csv", index=False)
    pd.DataFrame({"id": ["a", "b", "c"], "wrong": [0, 1, 1], "confidence": [90, 50, None],
                  "p_yes": [0.9, 0.4, 0.2]}).to_csv(tmp_path / "09_stated_points.csv", index=False)
    for name in ("09_injection", "09_confidence"):
        figures.draw(name, tmp_path, tmp_path / "fig")
        assert (tmp_path / "fig" / f"{name}.png").stat().st_size > 10_000


def test_replies_match_the_scaled_path_and_read_p_yes_from_the_prefill(tiny, tmp_path, monkeypatch):
    from hneuron_utils import interventions
    from hneuron_utils.text.generation import render
    from hneuron_utils.text.replies import first_token_ids
    from hneuron_utils.text.generation import Sampling

    monkeypatch.setenv("HNEURON_CACHE", str(tmp_path))
    convs = [confidence.confidence_messages(q, a) for q, a in [("Who wrote Hamlet?", "Shakespeare"),
                                                               ("Capital of France?", "Lyon"), ("2+2?", "4")]]
    flat = [3, 130, 128 * 2 + 5]
    got = confidence.replies(tiny, ["a", "b", "c"], convs, flat, 0.0, max_new_tokens=4, batch_size=8)
    prompts = [render(tiny.tokenizer, c) for c in convs]
    ref = interventions.generate_scaled(tiny, prompts, flat, 0.0, Sampling(max_new_tokens=4))
    assert [got[i]["text"] for i in "abc"] == [r[0].text for r in ref]
    yes = first_token_ids(tiny.tokenizer, ["Yes", "yes"])
    no = first_token_ids(tiny.tokenizer, ["No", "no"])
    with interventions.scaled(tiny, interventions.by_layer(flat, tiny.d_ff), 0.0), torch.no_grad():
        for i, p in zip("abc", prompts):
            probs = torch.softmax(tiny.hf(input_ids=torch.tensor([tiny.tokenizer(p, add_special_tokens=False)["input_ids"]])).logits[0, -1], -1)
            py, pn = float(probs[yes].sum()), float(probs[no].sum())
            assert got[i]["p_yes"] == pytest.approx(py / (py + pn), abs=1e-4)
            assert got[i]["yes_no_mass"] == pytest.approx(py + pn, abs=1e-5)
    plain = confidence.replies(tiny, ["a", "b", "c"], convs, flat, 1.0, max_new_tokens=4, batch_size=8)
    assert [plain[i]["p_yes"] for i in "abc"] != [got[i]["p_yes"] for i in "abc"]
