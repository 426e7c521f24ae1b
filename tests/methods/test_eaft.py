"""Notebook 08: the EAFT loss (against its formula), tuning only some layers' MLPs, and the measurements of
learning, forgetting, drift and the detector, on the tiny in-code model and synthetic numbers."""

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch

from hneuron_utils import models, stats
from hneuron_utils.models import tiny
from hneuron_utils.training import eaft, forgetting, sft
from hneuron_utils.workbook import readouts


# --------------------------------------------------------------------------- the loss


def test_gate_equals_the_formula_on_a_hand_computed_example():
    # two rows, 3 logits each, k = 2: keep the two largest, renormalise, entropy, / 3.0, ^ alpha
    logits = torch.tensor([[2.0, 0.0, -5.0], [1.0, 1.0, 0.0]])
    p1 = math.exp(2) / (math.exp(2) + 1)
    h1 = -(p1 * math.log(p1) + (1 - p1) * math.log(1 - p1))
    h2 = math.log(2)  # two equal logits
    w = eaft.eaft_gate(logits, alpha=1.0, k=2)
    assert w.tolist() == pytest.approx([h1 / 3.0, h2 / 3.0], rel=1e-6)
    assert eaft.eaft_gate(logits, alpha=2.0, k=2).tolist() == pytest.approx([(h1 / 3) ** 2, (h2 / 3) ** 2], rel=1e-6)
    # k = 20 over a uniform vocabulary of 20: the largest entropy, ln 20 ≈ 3.0 → weight ≈ 1
    assert float(eaft.eaft_gate(torch.zeros(1, 20))) == pytest.approx(math.log(20) / 3.0)
    assert float(eaft.normalised_entropy(torch.zeros(1, 20))) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        eaft.eaft_gate(logits, alpha=-1.0)


def test_no_gradient_flows_through_the_gate_and_alpha_zero_is_plain_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(6, 30, requires_grad=True)
    target = torch.randint(0, 30, (6,))
    loss, ce, w = eaft.token_objective(logits, target, "eaft", alpha=1.0, k=20)
    assert not w.requires_grad
    loss.backward()
    # the gradient is that of Σ w·CE / N with w held constant
    ref_logits = logits.detach().clone().requires_grad_(True)
    (torch.nn.functional.cross_entropy(ref_logits, target, reduction="none") * w).mean().backward()
    assert torch.allclose(logits.grad, ref_logits.grad, atol=1e-6)
    plain = torch.nn.functional.cross_entropy(logits.detach(), target)
    assert float(eaft.token_objective(logits.detach(), target, "eaft", alpha=0.0)[0]) == pytest.approx(float(plain))
    assert float(eaft.token_objective(logits.detach(), target, "sft")[0]) == pytest.approx(float(plain))
    with pytest.raises(ValueError, match="loss must be"):
        eaft.token_objective(logits, target, "dft")


# --------------------------------------------------------------------------- tuning


def _cfg(**kw):
    pairs = [("Say the colour of the sky.", "blue")] * 8 + [("Say the colour of grass.", "green")] * 8
    base = dict(base_model="tiny-random", steps=6, batch_size=4, lr=3e-3, warmup_steps=1, max_tokens=128, freeze=(),
                seed=0, data_digest=sft.digest_pairs(pairs))
    return sft.TuneConfig(**{**base, **kw}), pairs


def test_tuning_only_the_last_layers_mlps_and_the_two_losses(tmp_path):
    cfg, pairs = _cfg(train_layers=(2,))
    rec = sft.tune(cfg, pairs, tmp_path / "sft", progress=False)
    ecfg = dataclasses.replace(cfg, loss="eaft")
    erec = sft.tune(ecfg, pairs, tmp_path / "eaft", progress=False)
    base = tiny.build_model(tiny.build_tokenizer())
    a = models.load_model(str(tmp_path / "sft"), dtype="float32").hf
    b = models.load_model(str(tmp_path / "eaft"), dtype="float32").hf
    changed = {n for n, p in a.named_parameters() if not torch.equal(p, dict(base.named_parameters())[n])}
    assert changed and all(n.startswith("model.layers.2.mlp.") for n in changed)
    assert rec["trainable parameters"] == sum(p.numel() for n, p in base.named_parameters() if n.startswith("model.layers.2.mlp."))
    # same data and seed, different loss: different weights; EAFT's weights are below 1, SFT's are 1
    assert not torch.equal(a.model.layers[2].mlp.up_proj.weight, b.model.layers[2].mlp.up_proj.weight)
    import pandas as pd

    ls, le = pd.read_csv(tmp_path / "sft" / "losses.csv"), pd.read_csv(tmp_path / "eaft" / "losses.csv")
    assert (ls.mean_weight == 1).all() and (le.mean_weight < 1).all()
    assert le.cross_entropy[0] == pytest.approx(ls.cross_entropy[0])  # the same first batch and weights
    assert erec["first loss"] < rec["first loss"]
    with pytest.raises(ValueError, match="out of range"):
        sft.tune(dataclasses.replace(cfg, train_layers=(7,)), pairs, tmp_path / "bad", progress=False)


def test_the_new_tuning_fields_leave_notebook_06s_cache_key_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("HNEURON_CACHE", str(tmp_path))
    cfg, _ = _cfg()
    old_key = {"stage": "sft", "version": 1, **{k: v for k, v in dataclasses.asdict(cfg).items()
                                                  if k not in ("loss", "eaft_alpha", "eaft_topk", "train_layers", "autocast",
                                                                   "stop_after")}}
    from hneuron_utils.cache import stage_dir

    assert sft.tuned_dir(cfg) == stage_dir("sft", old_key)
    assert sft.tuned_dir(dataclasses.replace(cfg, loss="eaft")) != sft.tuned_dir(cfg)
    assert sft.tuned_dir(dataclasses.replace(cfg, train_layers=(1,))) != sft.tuned_dir(cfg)
    # the EAFT settings do not touch a plain-SFT run's key; they do an EAFT run's
    assert sft.tuned_dir(dataclasses.replace(cfg, eaft_alpha=2.0)) == sft.tuned_dir(cfg)
    e = dataclasses.replace(cfg, loss="eaft")
    assert sft.tuned_dir(dataclasses.replace(e, eaft_alpha=2.0)) != sft.tuned_dir(e)


def test_each_pair_is_seen_once_before_any_is_seen_twice(tmp_path):
    cfg, pairs = _cfg(steps=4, batch_size=4, train_layers=(2,))  # 16 draws of 16 pairs: exactly one pass
    pairs = [(f"Say the number {i}.", str(i)) for i in range(16)]
    seen = []
    orig = sft._batch

    def spy(encoded, pad):
        seen.extend(tuple(e[0]) for e in encoded)
        return orig(encoded, pad)

    sft._batch = spy
    try:
        sft.tune(cfg, pairs, tmp_path / "m", checkpoint_every=0, progress=False)
    finally:
        sft._batch = orig
    assert len(seen) == 16 and len(set(seen)) == 16


def test_eaft_with_alpha_zero_trains_to_the_sft_weights(tmp_path):
    cfg, pairs = _cfg(train_layers=(1, 2))
    sft.tune(cfg, pairs, tmp_path / "sft", progress=False)
    sft.tune(dataclasses.replace(cfg, loss="eaft", eaft_alpha=0.0), pairs, tmp_path / "e0", progress=False)
    a = models.load_model(str(tmp_path / "sft"), dtype="float32").hf
    b = models.load_model(str(tmp_path / "e0"), dtype="float32").hf
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.allclose(p, q, atol=1e-6), n


# --------------------------------------------------------------------------- measurements


def _items(n=20):
    from hneuron_utils.data.medmc import MCItem

    return [MCItem(f"i{k}", f"Question {k}?", ("alpha", "beta", "gamma", "delta"), k % 4, "medical_mc") for k in range(n)]


def test_mc_split_is_disjoint_seeded_and_checked():
    items = _items()
    tr, ho = forgetting.mc_split(items, 12, 6, 0)
    assert len(tr) == 12 and len(ho) == 6 and not {i.id for i in tr} & {i.id for i in ho}
    assert forgetting.mc_split(items, 12, 6, 0) == (tr, ho)
    with pytest.raises(ValueError, match="has 20"):
        forgetting.mc_split(items, 15, 6, 0)
    user, target = forgetting.mc_pairs(tr[:1], target_format="letter_text")[0]
    assert "A. alpha" in user and target.startswith("ABCD"[tr[0].correct] + ". ")
    _, target = forgetting.mc_pairs(tr[:1], target_format="answer_letter")[0]
    assert target.startswith("Answer: " + "ABCD"[tr[0].correct] + ". ")
    with pytest.raises(ValueError, match="target format"):
        forgetting.mc_pairs(tr[:1], target_format="letter")


def test_mc_scores_pick_the_most_likely_letter_on_the_tiny_model(tmp_path, monkeypatch):
    monkeypatch.setenv("HNEURON_CACHE", str(tmp_path))
    loaded = models.load_model("tiny-random", dtype="float32")
    from hneuron_utils.data.medmc import MCItem

    items = [MCItem(f"i{k}", "Question " + "very " * (3 * k) + f"long {k}?", ("alpha", "beta", "gamma", "delta"), k % 4,
                    "medical_mc") for k in range(6)]  # prompts of different lengths: left padding in a batch
    got = forgetting.mc_scores(loaded, items, target_format="letter_text", batch_size=4, progress=False)
    from hneuron_utils.data.medmc import mc_prompt
    from hneuron_utils.text.generation import chat_prompt

    letters = forgetting.letter_ids(loaded.tokenizer)
    for it, (_, row) in zip(items, got.iterrows()):  # one prompt at a time, no padding
        ids = loaded.tokenizer(chat_prompt(loaded.tokenizer, mc_prompt(it)), add_special_tokens=False, return_tensors="pt")
        p = torch.softmax(loaded.hf(**ids).logits[0, -1].float(), -1)[letters[:4]]
        assert row.choice == int(p.argmax()) and row.correct == (row.choice == it.correct)
        assert row.letter_mass == pytest.approx(float(p.sum()), rel=1e-4)


def test_token_table_and_conflict_summary(tmp_path, monkeypatch):
    monkeypatch.setenv("HNEURON_CACHE", str(tmp_path))
    loaded = models.load_model("tiny-random", dtype="float32")
    pairs = [("Name a colour.", "blue"), ("Name a fruit please.", "apple")]
    t = forgetting.token_table(loaded, pairs, 256, 2, k=20)
    enc = [sft.encode_pair(loaded.tokenizer, p, 256) for p in pairs]
    assert len(t) == sum(sum(x != -100 for x in lab[1:]) for _, lab in enc)
    assert ((t.p_target > 0) & (t.p_target <= 1)).all() and t.entropy_norm.between(0, 1).all()
    for k, p in enumerate(pairs):  # each pair alone gives its own rows of the batched table
        alone = forgetting.token_table(loaded, [p], 256, 1, k=20)
        assert np.allclose(alone.cross_entropy, t[t.pair == k].cross_entropy, atol=1e-4)
    again = forgetting.token_table(loaded, pairs, 256, 2, k=20)  # from the cache
    assert np.allclose(again.to_numpy(), t.to_numpy()) and list(again.columns) == list(t.columns)
    synth = pd.DataFrame({"pair": [0, 0, 1, 1], "p_target": [0.01, 0.9, 0.5, 0.02], "entropy_topk": [0.3, 0.3, 2.0, 2.5],
                          "cross_entropy": [-math.log(0.01), -math.log(0.9), -math.log(0.5), -math.log(0.02)]})
    synth["entropy_norm"] = synth.entropy_topk / math.log(20)
    s = forgetting.conflict_summary(synth, 0.1, 0.3, 1.0, 3.0, n_boot=50, seed=0).set_index("measure").value
    assert s["share of tokens that are confident conflicts"] == 0.25  # only the first token: p 0.01 at low entropy
    assert s["mean EAFT weight, conflicts"] == pytest.approx(0.1)
    ce = synth.cross_entropy.to_numpy()
    w = synth.entropy_topk.to_numpy() / 3
    assert s["share of the SFT loss on conflicts"] == pytest.approx(ce[0] / ce.sum())
    assert s["share of the EAFT loss on conflicts"] == pytest.approx(ce[0] * w[0] / (ce * w).sum())
    assert s["share of the EAFT loss on conflicts"] < s["share of the SFT loss on conflicts"]


def test_paired_changes_words_and_perplexity():
    before, after = [1] * 50, [1] * 30 + [0] * 20
    c = forgetting.paired_change(before, after, 500, 0)
    assert c["change"] == pytest.approx(-0.4) and c["change hi"] < 0 and c["n"] == 50
    assert readouts.change_words(c["change lo"], c["change hi"]) == "fell"
    assert readouts.change_words(-0.1, 0.1) == "no detectable change"
    with pytest.raises(ValueError):
        forgetting.paired_change([1], [1, 0], 10, 0)
    t = forgetting.rate_rows({"untuned": before, "SFT": after}, "acc", "untuned", 500, 0)
    assert t.change.isna().tolist() == [True, False]
    lines = readouts.read_changes(t)
    assert len(lines) == 1 and "→ fell" in lines[0] and "(n = 50)" in lines[0]
    nll = np.array([10.0, 20.0]), np.array([10.0, 10.0])
    p = forgetting.perplexity_rows({"untuned": nll, "SFT": (nll[0] * 1.1, nll[1])}, "untuned", 200, 0)
    assert p.rate[0] == pytest.approx(math.exp(1.5)) and p.change[1] == pytest.approx(math.exp(0.15))
    assert "×1.162" in readouts.read_changes(p)[0]


def test_drift_tests_find_h_neurons_that_moved_more():
    rng = np.random.default_rng(0)
    L, F = 2, 400
    h_flat_model = [5 * F + 3, 5 * F + 10, 6 * F + 7, 6 * F + 50, 0 * F + 1]  # layers 5, 6 trained; layer 0 not
    layers = [5, 6]
    h_sub = forgetting.h_in_layers(h_flat_model, F, layers)
    assert h_sub.tolist() == [3, 10, F + 7, F + 50]
    ch = {k: rng.uniform(0, 1e-3, (L, F)) for k in ("d_up", "d_down", "sq_change")}
    moved = {k: v.copy() for k, v in ch.items()}
    for k in moved:
        moved[k].ravel()[h_sub] *= 50
    t, ranks = forgetting.drift_tests({"SFT": moved, "EAFT": ch}, h_sub, 500, 0, 200)
    t = t.set_index("loss")
    assert t.loc["SFT", "difference hi"] < 0 and t.loc["SFT", "weight-change share (H)"] > 10 * t.loc["SFT", "neuron share (H)"]
    lines = readouts.read_drift(t.reset_index())
    assert "changed MORE" in lines[0] and "changed MORE" not in lines[1]
    r = forgetting.rank_table(ranks, h_sub)
    assert len(r) == 8 and r["rank"].between(0, 1).all()
    empty, _ = forgetting.drift_tests({"SFT": ch}, np.array([], dtype=np.int64), 10, 0, 10)
    assert "nothing to test" in readouts.read_drift(empty)[0]


def test_mlp_changes_on_two_tiny_models():
    a = tiny.build_model(tiny.build_tokenizer())
    b = tiny.build_model(tiny.build_tokenizer())
    with torch.no_grad():
        b.model.layers[1].mlp.up_proj.weight[5] *= -1  # neuron 5 of layer 1: its up row reversed
    ch = forgetting.mlp_changes(a, b, "model.layers", [1, 2])
    assert ch["d_up"].shape == (2, a.config.intermediate_size)
    assert ch["d_up"][0, 5] == pytest.approx(2.0) and np.delete(ch["d_up"][0], 5).max() < 1e-12
    assert ch["sq_change"][1].max() == 0 and ch["sq_change"][0].argmax() == 5


def test_paired_auroc_and_detector_reading():
    rng = np.random.default_rng(0)
    y = np.array([0] * 60 + [1] * 60)
    good = y + rng.normal(0, 0.5, 120)
    t = stats.paired_auroc(y, {"untuned": good, "SFT": rng.normal(0, 1, 120)}, "untuned", 300, 0)
    assert t.auroc[0] > 0.8 and t["change hi"][1] < 0
    t["random neurons (mean AUROC)"] = 0.5
    assert "→ fell" in readouts.read_detector(t)[0]


def test_qa_sets_take_unused_questions_and_refuse_too_few():
    from hneuron_utils.data import QARecord

    recs = [QARecord(f"q{i}", f"Q{i}?", ("a",), "triviaqa") for i in range(10)]
    looked = pd.DataFrame({"id": [r.id for r in recs], "greedy_correct": [True] * 4 + [False] * 6})
    known, unknown = forgetting.qa_sets(looked, {"q0"}, recs, 3, 0)
    assert {r.id for r in known} == {"q1", "q2", "q3"} and len(unknown) == 3
    assert {r.id for r in unknown} <= {f"q{i}" for i in range(4, 10)}
    with pytest.raises(ValueError, match="screened only 3"):
        forgetting.qa_sets(looked, {"q0"}, recs, 4, 0)


def test_reidentify_gives_the_original_set_back_and_sees_a_moved_one():
    from hneuron_utils.probes.probe import fit_h_probe, h_neurons

    rng = np.random.default_rng(0)
    n, L, F = 80, 2, 10
    y = np.array([0, 1] * (n // 2))
    ans = rng.normal(0, 1, (n, L * F)).astype(np.float32)
    ans[:, F + 3] += 3 * y  # layer 1, neuron 3 carries the label
    oth = rng.normal(0, 1, (n, L * F)).astype(np.float32)
    examples = pd.DataFrame({"split": ["train"] * 60 + ["test"] * 20, "label": y})
    meta = {"n_layers": L, "d_ff": F, "C": 1.0, "mode": "3-vs-1"}
    clf = fit_h_probe(ans[:60], oth[:60], y[:60], 1.0, "3-vs-1", seed=0, tol=1e-6)
    original = h_neurons(clf.coef_[0], L, F).flat_index.tolist()
    assert F + 3 in original
    moved = ans.copy()
    moved[:, [F + 3, F + 7]] = moved[:, [F + 7, F + 3]]  # the signal moves to neuron 7 of the trained layer
    t = forgetting.reidentify({"untuned": (ans, oth), "tuned": (moved, oth)}, examples, meta, original, [1], tol=1e-6, seed=0)
    t = t.set_index("model")
    assert t.loc["untuned", "Jaccard with 03's set"] == 1.0 and t.loc["untuned", "Jaccard within the trained layers"] == 1.0
    assert t.loc["tuned", "Jaccard within the trained layers"] < 1.0
    lines = readouts.read_reidentify(t.reset_index(), 0.4)
    assert len(lines) == 3 and "Jaccard 1.00 overall" in lines[0] and "0.40" in lines[2]


def test_passage_nll_matches_the_intervention_modules_perplexity():
    from hneuron_utils.interventions.steering import perplexity

    loaded = models.load_model("tiny-random", dtype="float32")
    texts = ["The river runs to the sea.", "A short one.", "Three words here and then some more words follow."]
    nll, n = forgetting.passage_nll(loaded, texts, 2, 64)
    assert math.exp(nll.sum() / n.sum()) == pytest.approx(perplexity(loaded, texts, None, 1.0, 2, max_tokens=64), rel=1e-5)
    one, _ = forgetting.passage_nll(loaded, texts[1:2], 1, 64)
    assert one[0] == pytest.approx(nll[1], rel=1e-4)  # unaffected by the batch's padding


def test_judge_agreement_counts_both_calls_per_model():
    labels = pd.DataFrame({
        "model": ["untuned", "untuned", "SFT", "SFT"],
        "question": ["Capital of France?"] * 4,
        "answers": [["Paris"]] * 4,
        "response": ["Paris", "Lyon", "I don't know.", "It is Paris."],
        "label": ["correct", "wrong", "no answer", "wrong"]})  # the last: a reference label the rule disagrees with
    assert forgetting.rule_outcome("Capital of France?", "Lyon", ["Paris"]) == "wrong"
    assert forgetting.rule_outcome("Capital of France?", "I don't know.", ["Paris"]) == "no answer"
    t = forgetting.judge_agreement(labels).set_index(["answers", "call"])
    assert t.loc[("all", "correct vs not"), "agreement"] == 0.75 and t.loc[("all", "wrong vs not"), "agreement"] == 0.75
    assert t.loc[("untuned", "correct vs not"), "agreement"] == 1.0 and t.loc[("SFT", "wrong vs not"), "responses"] == 2
    assert t.loc[("all", "correct vs not"), "majority baseline"] == 0.75
    assert len(readouts.read_judge_agreement(t.reset_index())) == 2
    with pytest.raises(ValueError, match="labels must be"):
        forgetting.judge_agreement(labels.assign(label="maybe"))


def test_answer_rows_carry_the_rules_outcome():
    from hneuron_utils.data import QARecord

    recs = [QARecord("q1", "Capital of France?", ("Paris",), "triviaqa")]
    m = {"SFT": {"known": pd.DataFrame({"id": ["q1"], "correct": [False], "refused": [True], "text": ["No idea."]})}}
    r = forgetting.answer_rows(m, {"known": recs})
    assert r.iloc[0].to_dict() == {"model": "SFT", "set": "known", "id": "q1", "question": "Capital of France?",
                                   "answers": ["Paris"], "response": "No idea.", "rule": "no answer"}


def test_train_layer_indices_last_k_or_the_h_neurons_layers():
    assert forgetting.train_layer_indices(3, n_layers=10, h_flat=[], d_ff=4) == (7, 8, 9)
    # H-neurons at layers 5, 1, 5 (flat index // d_ff): each layer once, in order
    assert forgetting.train_layer_indices("h_layers", n_layers=10, h_flat=[21, 5, 22], d_ff=4) == (1, 5)
    with pytest.raises(ValueError, match="found no H-neurons"):
        forgetting.train_layer_indices("h_layers", n_layers=10, h_flat=[], d_ff=4)
    with pytest.raises(ValueError, match="1..10"):
        forgetting.train_layer_indices(11, n_layers=10, h_flat=[], d_ff=4)


def test_autocast_field_keeps_the_bfloat16_cache_key_and_float32_gets_its_own(tmp_path, monkeypatch):
    """Tunings made in bfloat16 autocast keep their cache keys; a float32 tuning (a CPU without native
    bfloat16) is another computation and gets another key."""
    monkeypatch.setenv("HNEURON_CACHE", str(tmp_path))
    cfg, _ = _cfg()
    assert cfg.autocast == "bfloat16"
    assert sft.tuned_dir(cfg) == sft.tuned_dir(dataclasses.replace(cfg, autocast="bfloat16"))
    assert sft.tuned_dir(dataclasses.replace(cfg, autocast="float32")) != sft.tuned_dir(cfg)
    assert sft.autocast_dtype() == ("bfloat16" if models.resolve_dtype("auto") == torch.bfloat16 else "float32")


def test_answer_letter_format_reads_the_letter_after_the_prefilled_prefix(tmp_path, monkeypatch):
    """Every model is scored at the same place: after "Answer:" prefilled in its turn (the tiny tokenizer splits
    the space off, so the space goes into the prompt and the letter is the next token)."""
    monkeypatch.setenv("HNEURON_CACHE", str(tmp_path))
    loaded = models.load_model("tiny-random", dtype="float32")
    from hneuron_utils.data.medmc import MCItem, mc_prompt
    from hneuron_utils.text.generation import chat_prompt

    suffix, letters = forgetting.letter_reading(loaded.tokenizer, "Answer:")
    assert suffix == "Answer: " and len(set(letters)) == 5
    items = [MCItem(f"i{k}", f"Question {k}?" + " more" * k, ("alpha", "beta", "gamma"), k % 3, "medical_mc")
             for k in range(5)]
    got = forgetting.mc_scores(loaded, items, target_format="answer_letter", batch_size=2, progress=False)
    plain = forgetting.mc_scores(loaded, items, target_format="letter_text", batch_size=2, progress=False)
    for it, (_, row) in zip(items, got.iterrows()):
        text = chat_prompt(loaded.tokenizer, mc_prompt(it)) + "Answer: "
        ids = loaded.tokenizer(text, add_special_tokens=False, return_tensors="pt")
        p = torch.softmax(loaded.hf(**ids).logits[0, -1].float(), -1)[letters[:3]]
        assert row.choice == int(p.argmax()) and row.letter_mass == pytest.approx(float(p.sum()), rel=1e-4)
    assert not np.allclose(got.letter_mass, plain.letter_mass)  # a different place, a different reading
    # the validation scorer reads the same way, on a model in training
    scorer = forgetting.ValidationScorer(items, target_format="answer_letter", batch_size=3)
    assert scorer(loaded.hf, loaded.tokenizer) == {"validation correct": int(got.correct.sum()), "validation items": 5}
    with pytest.raises(ValueError, match="validation split is empty"):
        forgetting.ValidationScorer([], target_format="answer_letter", batch_size=3)
    # reusing the lower layers' residuals gives the same reading, and reuses them at the next evaluation
    for n, p in loaded.hf.named_parameters():
        p.requires_grad = n.startswith("model.layers.2.mlp.")
    fast = forgetting.ValidationScorer(items, target_format="answer_letter", batch_size=3, reuse_below=2)
    assert fast(loaded.hf, loaded.tokenizer) == scorer(loaded.hf, loaded.tokenizer)
    fast(loaded.hf, loaded.tokenizer)
    assert (fast.store.computed, fast.store.reused) == (2, 2)  # 5 items in batches of 3: two batches


def test_tuning_with_reused_lower_layers_gives_the_same_weights(tmp_path, monkeypatch):
    """The learning-rate grid and the second loss reuse the first tuning's residuals: bit-identical weights."""
    monkeypatch.setenv("HNEURON_CACHE", str(tmp_path))
    cfg, pairs = _cfg(train_layers=(2,))
    sft._RESIDUALS.clear()
    sft.tune(cfg, pairs, tmp_path / "first", progress=False)
    store = sft._RESIDUALS[2]
    computed, reused = store.computed, store.reused
    assert computed > 0
    sft.tune(cfg, pairs, tmp_path / "again", progress=False)  # the same batches: every residual reused
    assert store.computed == computed and store.reused == reused + 6
    monkeypatch.setattr(sft, "_residual_store", lambda model, cfg: None)
    sft.tune(cfg, pairs, tmp_path / "plain", progress=False)
    a, b, c = (models.load_model(str(tmp_path / d), dtype="float32").hf for d in ("first", "again", "plain"))
    for (n, p), q, r in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(p, q) and torch.equal(p, r), n


def test_tune_evaluates_on_schedule_stops_early_and_resumes_with_its_curve(tmp_path, monkeypatch):
    monkeypatch.setenv("HNEURON_CACHE", str(tmp_path))
    pairs = [("Say the colour of the sky.", "blue")] * 8 + [("Say the colour of grass.", "green")] * 8
    cfg = sft.TuneConfig(base_model="tiny-random", steps=8, batch_size=4, lr=3e-3, warmup_steps=1, max_tokens=128,
                         freeze=(), seed=0, data_digest=sft.digest_pairs(pairs), stop_after=6)
    seen = []

    def evaluate(model, tok):
        seen.append(model.training)
        return {"validation correct": len(seen), "validation items": 10}

    rec = sft.tune(cfg, pairs, tmp_path / "a", checkpoint_every=2, progress=False, evaluate=evaluate, eval_every=4)
    evals = pd.read_csv(tmp_path / "a" / "evals.csv")
    assert evals.step.tolist() == [0, 4, 6] and rec["steps run"] == 6 and not any(seen)
    losses = pd.read_csv(tmp_path / "a" / "losses.csv")
    assert losses.step.max() == 6  # stopped after 6 of the schedule's 8 steps
    full = sft.TuneConfig(**{**cfg.__dict__, "stop_after": 0})
    sft.tune(full, pairs, tmp_path / "b", checkpoint_every=2, progress=False)
    # the same schedule: the first 6 learning rates agree with the full run's
    assert np.allclose(pd.read_csv(tmp_path / "b" / "losses.csv").lr[:6], losses.lr)
    with pytest.raises(RuntimeError, match="without evaluations"):
        sft.tune(full, pairs, tmp_path / "b", progress=False, evaluate=evaluate, eval_every=4)
    with pytest.raises(ValueError, match="eval_every"):
        sft.tune(full, pairs, tmp_path / "c", progress=False, evaluate=evaluate)
    assert sft.tuned_dir(full) != sft.tuned_dir(cfg)  # a run stopped early is its own model

    class Keyed:  # an evaluator that names itself: a cached run evaluated by another one is refused
        def __init__(self, version):
            self.version = version

        def key(self):
            return {"version": self.version}

        def __call__(self, model, tok):
            return {"validation correct": 1, "validation items": 2}

    sft.tune(cfg, pairs, tmp_path / "k", progress=False, evaluate=Keyed(1), eval_every=4, save_weights=False)
    assert not list((tmp_path / "k").glob("*.safetensors")) and (tmp_path / "k" / "evals.csv").exists()
    with pytest.raises(RuntimeError, match="without saving the weights"):
        sft.tune(cfg, pairs, tmp_path / "k", progress=False, evaluate=Keyed(1), eval_every=4)
    assert sft.tune(cfg, pairs, tmp_path / "k", progress=False, evaluate=Keyed(1), eval_every=4,
                    save_weights=False)["steps run"] == 6
    with pytest.raises(RuntimeError, match="evaluated by"):
        sft.tune(cfg, pairs, tmp_path / "k", progress=False, evaluate=Keyed(2), eval_every=4, save_weights=False)
    with pytest.raises(RuntimeError, match="an earlier scorer"):  # evaluated before evaluators named themselves
        sft.tune(cfg, pairs, tmp_path / "a", progress=False, evaluate=Keyed(1), eval_every=4)


def test_selection_table_choice_and_manipulation_check():
    curves = {1e-5: pd.DataFrame({"step": [0, 12, 24], "validation correct": [10, 12, 15], "validation items": 48}),
              1e-4: pd.DataFrame({"step": [0, 12, 24], "validation correct": [10, 15, 8], "validation items": 48})}
    t = forgetting.selection_table(curves)
    assert len(t) == 6 and (t.lo < t.accuracy).all() and (t.accuracy < t.hi).all()
    c = forgetting.choose_setting(t)  # a tie of 15: fewer steps first
    assert (c["lr"], c["step"], c["untuned accuracy"]) == (1e-4, 12, 10 / 48)
    with pytest.raises(ValueError, match="after step 0"):
        forgetting.choose_setting(t[t.step == 0])
    outcomes = pd.DataFrame([
        {"measure": forgetting.LEARNING, "model": "untuned", "rate": 0.3, "n": 160, "change": np.nan,
         "change lo": np.nan, "change hi": np.nan},
        {"measure": forgetting.LEARNING, "model": "SFT", "rate": 0.4, "n": 160, "change": 0.1, "change lo": 0.03,
         "change hi": 0.17},
        {"measure": forgetting.LEARNING, "model": "EAFT", "rate": 0.32, "n": 160, "change": 0.02, "change lo": -0.04,
         "change hi": 0.08}])
    check = forgetting.manipulation_check(outcomes, tuned=["SFT", "EAFT"])
    assert check.taught.tolist() == [True, False]
    from hneuron_utils.workbook import readouts

    lines = readouts.read_manipulation_check(check)
    assert "did not teach" in lines[1] and "inconclusive" in lines[-1]
    versus = pd.DataFrame([{"measure": "TriviaQA accuracy", "comparison": "EAFT − SFT", "change": 0.05,
                            "change lo": 0.01, "change hi": 0.09, "n": 200}])
    assert "inconclusive" in readouts.read_head_to_head(versus, taught=False)[0]
    read = readouts.read_head_to_head(versus, taught=True)
    assert "higher under EAFT" in read[0] and "4.6" in read[-1]
    with pytest.raises(ValueError, match="lack"):
        forgetting.manipulation_check(outcomes, tuned=["SFT", "LoRA"])
