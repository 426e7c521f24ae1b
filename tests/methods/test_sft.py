"""Instruction tuning (notebook 06) on the tiny in-code model, and the tuning set's construction."""

import json

import pytest
import torch

from hneuron_utils import models
from hneuron_utils.training import sft
from hneuron_utils.models import tiny
from hneuron_utils.judges import normalize


def test_instructions_are_seeded_and_answered_exactly():
    a, b = sft.instructions(200, 3), sft.instructions(200, 3)
    assert a == b and a != sft.instructions(200, 4)
    for user, ans in a:
        if user.startswith("What is") and "plus" in user:
            x, y = [int(t) for t in user.replace("?", "").split() if t.isdigit()]
            assert ans == str(x + y)
        if "backwards" in user:
            assert ans == user.split("'")[1][::-1]


def test_qa_pairs_skip_every_evaluated_question():
    evaluated = sft.evaluated_questions()
    assert len(evaluated) > 10000  # TriviaQA train split + NQ-Open test + the rest
    pairs, info = sft.qa_pairs(500, 0, evaluated)
    assert len(pairs) == 500 and info["QA pairs"] == 500
    assert not {normalize(u.split(" Respond with")[0]) for u, _ in pairs} & evaluated
    with pytest.raises(ValueError, match="only"):
        sft.qa_pairs(10**7, 0, evaluated)


def test_encode_pair_puts_the_loss_on_the_response_only():
    tok = tiny.build_tokenizer()
    ids, labels = sft.encode_pair(tok, ("What is two plus two?", "four"), max_tokens=512)
    assert len(ids) == len(labels)
    resp = [i for i, l in zip(ids, labels) if l != -100]
    assert tok.decode(resp).startswith("four")  # the answer, then the end-of-turn
    assert labels[0] == -100


def test_gemma_template_is_given_only_to_a_template_less_tokenizer_with_turn_tokens():
    tok = tiny.build_tokenizer()
    assert sft.ensure_chat_template(tok) == "the tokenizer's own"
    tok.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        sft.ensure_chat_template(tok)


def test_frozen_parameters():
    m = tiny.build_model(tiny.build_tokenizer())
    frozen = sft.frozen_parameters(m, ["embeddings"])
    assert "model.embed_tokens.weight" in frozen and "lm_head.weight" in frozen
    assert all(p.requires_grad for n, p in m.named_parameters() if n not in frozen)
    with pytest.raises(ValueError, match="cannot freeze"):
        sft.frozen_parameters(m, ["everything"])


def test_tune_learns_saves_resumes_and_reloads(tmp_path):
    pairs = [("Say the colour of the sky.", "blue")] * 8 + [("Say the colour of grass.", "green")] * 8
    cfg = sft.TuneConfig(base_model="tiny-random", steps=30, batch_size=4, lr=3e-3, warmup_steps=2, max_tokens=128,
                         freeze=("embeddings",), seed=0, data_digest=sft.digest_pairs(pairs))
    rec = sft.tune(cfg, pairs, tmp_path / "m", checkpoint_every=10, progress=False)
    assert rec["last loss"] < 0.5 * rec["first loss"] and rec["pairs dropped (response beyond max_tokens)"] == 0
    with pytest.raises(ValueError, match="no tuning pair"):
        sft.tune(sft.TuneConfig(**{**cfg.__dict__, "max_tokens": 8}), pairs, tmp_path / "short", progress=False)
    assert json.loads((tmp_path / "m" / "tune_config.json").read_text())["steps"] == 30
    loaded = models.load_model(str(tmp_path / "m"), dtype="float32")
    base = tiny.build_model(tiny.build_tokenizer())
    # frozen embeddings unchanged, FFN weights changed
    assert torch.equal(loaded.hf.model.embed_tokens.weight, base.model.embed_tokens.weight)
    assert not torch.equal(loaded.hf.model.layers[0].mlp.up_proj.weight, base.model.layers[0].mlp.up_proj.weight)
    # a finished run is returned as it is; an interrupted one resumes from its checkpoint to the same weights
    assert sft.tune(cfg, pairs, tmp_path / "m", progress=False) == rec
    short = sft.TuneConfig(**{**cfg.__dict__, "steps": 30})
    d2 = tmp_path / "m2"
    d2.mkdir()
    import hneuron_utils.training.sft as mod
    calls = {"n": 0}
    orig = torch.optim.AdamW.step

    def boom(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 15:
            raise KeyboardInterrupt
        return orig(self, *a, **k)

    torch.optim.AdamW.step = boom
    try:
        with pytest.raises(KeyboardInterrupt):
            mod.tune(short, pairs, d2, checkpoint_every=10, progress=False)
    finally:
        torch.optim.AdamW.step = orig
    assert (d2 / "checkpoint.pt").exists()
    rec2 = mod.tune(short, pairs, d2, checkpoint_every=10, progress=False)
    w1 = models.load_model(str(d2), dtype="float32").hf.model.layers[1].mlp.down_proj.weight
    w0 = loaded.hf.model.layers[1].mlp.down_proj.weight
    assert torch.allclose(w0, w1, atol=1e-5)
    assert rec2["last loss"] == pytest.approx(rec["last loss"], rel=1e-3)


def test_response_loss_equals_the_models_own_loss():
    tok = tiny.build_tokenizer()
    m = tiny.build_model(tok)
    enc = [sft.encode_pair(tok, ("Name a colour.", "blue"), 256), sft.encode_pair(tok, ("Name a fruit please.", "apple"), 256)]
    batch = sft._batch(enc, tok.pad_token_id)
    assert torch.allclose(sft.response_loss(m, batch), m(**batch).loss, atol=1e-5)


def test_canonical_answer_skips_redirect_aliases():
    assert sft.canonical_answer(["Scorpio (disambiguation)", "Skorpio", "Scorpio"]) == "Scorpio"
    assert sft.canonical_answer(["Utah (State)", "Utah", "UT"]) == "Utah"
    assert sft.canonical_answer(["ISO 3166-1:RO", "Romania", "Roumania"]) == "Romania"
    assert sft.canonical_answer(["(x)", "a:b"]) is None
