from hneuron_utils import generation


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
