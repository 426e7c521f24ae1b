import pytest
import torch

from hneuron_utils.text import generation


def test_chat_prompt_has_template_and_paper_suffix(tiny):
    p = generation.qa_prompt(tiny.tokenizer, "Who wrote Hamlet?")
    assert p.startswith("<|im_start|>system\n") and p.endswith("<|im_start|>assistant\n")
    assert "Who wrote Hamlet? Respond with the answer only, without any explanation." in p


def test_encode_left_pads_and_adds_no_special_tokens(tiny):
    enc = generation.encode(tiny.tokenizer, ["a", "a longer text"])
    assert enc["attention_mask"][0, 0] == 0 and enc["attention_mask"][0, -1] == 1
    ids = tiny.tokenizer("a", add_special_tokens=False)["input_ids"]
    assert enc["input_ids"][0, -len(ids):].tolist() == ids


def test_batched_greedy_equals_one_at_a_time(tiny):
    """Left padding must not change greedy outputs (float32 tiny model)."""
    qs = ["Who?", "What is the capital of France?", "x"]
    prompts = [generation.qa_prompt(tiny.tokenizer, q) for q in qs]
    s = generation.Sampling(max_new_tokens=8)
    batched = generation.generate(tiny, prompts, s, batch_size=3)
    single = [generation.generate(tiny, [p], s)[0] for p in prompts]
    assert batched == single


def test_sampling_is_seeded(tiny):
    p = [generation.qa_prompt(tiny.tokenizer, "Who?")] * 2
    s = generation.Sampling(do_sample=True, max_new_tokens=8)
    assert generation.generate(tiny, p, s, seed=1) == generation.generate(tiny, p, s, seed=1)


def _prompts(m, n=6):
    qs = ["Who?", "What is the capital of France?", "x", "Which planet is known as the red planet?",
          "Name a colour.", "Who wrote Hamlet and when?"][:n]
    return [generation.qa_prompt(m.tokenizer, q) for q in qs]


def test_sample_many_greedy_equals_hf_generate(tiny):
    """Our loop (shared prefix cache, rows leaving the batch) decodes what HF generate decodes."""
    ps = _prompts(tiny)
    s = generation.Sampling(max_new_tokens=10)
    ref = generation.generate(tiny, ps, s, batch_size=4, progress=False)
    for share in (True, False):
        for rows in (16, 1, 3):  # 1 and 3: prefill in sub-batches whose caches are merged
            out = generation.sample_many(tiny, ps, 1, s, batch_size=6, share_prefix=share, progress=False,
                                         prefill_rows=rows)
            assert [o[0].text for o in out] == ref, (share, rows)
    for bs in (2, 3):  # small batches: finished rows are replaced by new prompts mid-decoding
        out = generation.sample_many(tiny, ps, 1, s, batch_size=bs, prefill_rows=1, progress=False)
        assert [o[0].text for o in out] == ref, bs


def test_sample_many_samples_do_not_depend_on_batching(tiny):
    ps = _prompts(tiny)
    s = generation.Sampling(do_sample=True, max_new_tokens=10)
    a = generation.sample_many(tiny, ps, 3, s, seed=7, batch_size=18, progress=False)
    b = generation.sample_many(tiny, ps[::-1], 3, s, seed=7, keys=[str(i) for i in range(6)][::-1],
                               batch_size=9, prefill_rows=2, progress=False)[::-1]
    assert [[x.text for x in r] for r in a] == [[x.text for x in r] for r in b]
    d = generation.sample_many(tiny, ps, 3, s, seed=7, batch_size=4, prefill_rows=1, progress=False)
    assert [[x.text for x in r] for r in a] == [[x.text for x in r] for r in d]
    c = generation.sample_many(tiny, ps, 3, s, seed=8, batch_size=18, progress=False)
    assert [[x.text for x in r] for r in a] != [[x.text for x in r] for r in c]
    assert len({x.text for x in a[1]}) > 1  # the K samples of one prompt differ


def test_top_k_one_sampling_is_greedy(tiny):
    ps = _prompts(tiny, 3)
    g = generation.sample_many(tiny, ps, 1, generation.Sampling(max_new_tokens=8), progress=False)
    s = generation.sample_many(tiny, ps, 2, generation.Sampling(do_sample=True, top_k=1, max_new_tokens=8),
                               progress=False)
    assert all(x.text == gg[0].text for gg, ss in zip(g, s) for x in ss)


def test_filter_logits_keeps_what_hf_warpers_keep():
    import torch
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    torch.manual_seed(0)
    logits = torch.randn(16, 300) * 3
    for t, k, p in [(1.0, 50, 0.9), (0.7, 20, 0.8), (1.3, 300, 0.5)]:
        s = generation.Sampling(do_sample=True, temperature=t, top_k=k, top_p=p)
        probs, ids = generation.filter_logits(logits, s)
        x = TopPLogitsWarper(p)(None, TopKLogitsWarper(k)(None, TemperatureLogitsWarper(t)(None, logits.clone())))
        ref = torch.softmax(x, -1)
        mine = torch.zeros_like(ref).scatter(1, ids, probs)
        assert torch.allclose(mine, ref, atol=1e-6)


def test_sampling_frequencies_follow_the_filtered_distribution():
    import torch

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    s = generation.Sampling(do_sample=True, top_k=50, top_p=0.9)
    probs, ids = generation.filter_logits(logits, s)  # keeps 0.5, 0.3, 0.15 (mass before 0.05 is 0.95)
    n = 4000
    draws = torch.cat([generation._draw(probs, ids, [generation.sample_seed(0, "q", i, 0)]) for i in range(n)])
    freq = torch.bincount(draws, minlength=4).float() / n
    assert freq[3] == 0
    assert torch.allclose(freq[:3], torch.tensor([0.5, 0.3, 0.15]) / 0.95, atol=0.03)


def test_greedy_with_several_samples_is_refused(tiny):
    import pytest

    with pytest.raises(ValueError):
        generation.sample_many(tiny, _prompts(tiny, 1), 2, generation.Sampling(), progress=False)


class _FakeTok:
    """decode() of a list of 'ids' that are strings themselves."""

    def decode(self, ids, skip_special_tokens=False):
        return "".join(ids)


def test_first_line_stops_only_at_a_newline_after_content():
    from hneuron_utils.text.generation import _first_line

    t = _FakeTok()
    assert _first_line(t, ["\n"]) is None  # a leading newline is skipped
    assert _first_line(t, ["\n", " Paris"]) is None  # no newline in the last token
    # the leading whitespace is kept: prompt + text must re-create what the model generated
    assert _first_line(t, ["\n", " Paris", "\n"]) == "\n Paris"
    assert _first_line(t, [" Rome", ".\nQuestion"]) == " Rome."


def test_base_style_prompt_and_newline_stop_on_the_tiny_model():
    from hneuron_utils import models
    from hneuron_utils.text.generation import BASE_SUFFIX, Sampling, question_prompt, sample_many

    loaded = models.load_model("tiny-random", dtype="float32")
    assert question_prompt(loaded.tokenizer, " Who? ", "base") == "Who?" + BASE_SUFFIX
    with pytest.raises(ValueError, match="prompt style"):
        question_prompt(loaded.tokenizer, "Who?", "nope")
    tok = loaded.tokenizer
    nl, a = tok("\n", add_special_tokens=False)["input_ids"][0], tok("a", add_special_tokens=False)["input_ids"][0]
    calls = {"n": 0}

    class Out:
        def __init__(self, logits):
            self.logits = logits

    def forced(model, **kw):  # 'a', 'a', newline, 'a', 'a', newline, ...
        calls["n"] += 1
        logits = model(**kw).logits.clone()
        logits[:] = -1e4
        logits[..., nl if calls["n"] % 3 == 0 else a] = 0
        return Out(logits)

    prompts = [question_prompt(tok, "Who?", "base")] * 2
    outs = sample_many(loaded, prompts, 1, Sampling(max_new_tokens=20), templated=False, stop_at_newline=True,
                       share_prefix=False, progress=False, forward=forced)
    assert [o[0].text for o in outs] == ["aa", "aa"] and all(o[0].stopped for o in outs)
    calls["n"] = 0
    plain = sample_many(loaded, prompts, 1, Sampling(max_new_tokens=7), templated=False, share_prefix=False,
                        progress=False, forward=forced)
    assert plain[0][0].text == "aa\naa\na" and not plain[0][0].stopped


def test_base_style_teacher_forcing_recreates_the_generated_tokens():
    """The stored base-style text keeps its leading space, so prompt + text re-tokenises to the tokens
    the model generated (the answer-token CETT of notebook 06 is read on those tokens)."""
    from hneuron_utils import models
    from hneuron_utils.text.generation import Sampling, question_prompt, sample_many
    from hneuron_utils.text.tokens import teacher_forced

    loaded = models.load_model("tiny-random", dtype="float32")
    tok = loaded.tokenizer
    sp_a, nl = tok.convert_tokens_to_ids("Ġa"), tok("\n", add_special_tokens=False)["input_ids"][0]
    calls = {"n": 0}

    class Out:
        def __init__(self, logits):
            self.logits = logits

    def forced(model, **kw):  # " a", then a newline
        calls["n"] += 1
        logits = model(**kw).logits.clone()
        logits[:] = -1e4
        logits[..., nl if calls["n"] % 2 == 0 else sp_a] = 0
        return Out(logits)

    prompt = question_prompt(tok, "Who?", "base")
    out = sample_many(loaded, [prompt], 1, Sampling(max_new_tokens=10), templated=False, stop_at_newline=True,
                      share_prefix=False, progress=False, forward=forced)[0][0]
    assert out.text == " a" and out.token_ids == [sp_a, nl]
    tf = teacher_forced(tok, prompt, out.text, None, templated=False)
    assert tf.input_ids[tf.response_start:].tolist() == out.token_ids[:-1]
    assert tf.input_ids[: tf.response_start].tolist() == tok(prompt)["input_ids"]


def test_float32_log_probs_equal_the_float32_softmax_in_chunks():
    from hneuron_utils.text.replies import float32_log_probs

    g = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=True).to(torch.bfloat16)
    h = torch.randn(4, 16, generator=g).to(torch.bfloat16)
    for cap in (None, 5.0):
        z = h.float() @ head.weight.float().T + head.bias.float()
        z = torch.tanh(z / cap) * cap if cap else z
        want = torch.log_softmax(z, -1)[:, [3, 7, 11]]
        got = float32_log_probs(head, h, [3, 7, 11], softcap=cap, chunk=7)
        assert torch.allclose(got, want, atol=1e-6)


def test_p_yes_is_read_from_float32_logits_of_a_bfloat16_model(tmp_path, monkeypatch):
    """P(yes) comes from the bfloat16 state entering the head, multiplied in float32 (not from the model's
    bfloat16 logits), and agrees with a single unbatched pass up to bfloat16's batch noise."""
    from hneuron_utils import models
    from hneuron_utils.text import replies
    from hneuron_utils.text.generation import render

    monkeypatch.setenv("HNEURON_CACHE", str(tmp_path))
    loaded = models.load_model("tiny-random", dtype="bfloat16")
    seen = []
    real = replies.float32_log_probs

    def spy(head, hidden, ids, **kw):
        seen.append(hidden.dtype)
        return real(head, hidden, ids, **kw)

    monkeypatch.setattr(replies, "float32_log_probs", spy)
    convs = [[{"role": "user", "content": q}] for q in ("Is the sky blue?", "Is grass red?", "Is 2 > 1?")]
    got = replies.yes_no_replies(loaded, ["a", "b", "c"], convs, max_new_tokens=2, batch_size=8)
    assert seen == [torch.bfloat16]
    yes, no = replies.first_token_ids(loaded.tokenizer, ["Yes", "yes"]), replies.first_token_ids(loaded.tokenizer, ["No", "no"])
    head = loaded.hf.get_output_embeddings().weight.float()
    with torch.no_grad():
        for i, c in zip("abc", convs):
            ids = torch.tensor([loaded.tokenizer(render(loaded.tokenizer, c), add_special_tokens=False)["input_ids"]])
            out = loaded.hf(input_ids=ids, output_hidden_states=True)
            p = torch.softmax(out.hidden_states[-1][0, -1].float() @ head.T, -1).double()
            py, pn = float(p[yes].sum()), float(p[no].sum())
            assert got[i]["p_yes"] == pytest.approx(py / (py + pn), rel=3e-2)
