import math

import torch

from hneuron_utils import interventions


def test_scaling_neurons_equals_scaling_down_proj_columns(tiny):
    ids = torch.randint(5, 200, (2, 7))
    neurons = interventions.by_layer([3, 130, 128 * 2 + 5], tiny.d_ff)
    assert set(neurons) == {0, 1, 2}
    with torch.no_grad():
        base = tiny.hf(input_ids=ids).logits
        with interventions.scaled(tiny, neurons, 0.0):
            hooked = tiny.hf(input_ids=ids).logits
        after = tiny.hf(input_ids=ids).logits
        saved = {l: tiny.down_proj_module(l).weight.clone() for l in neurons}
        try:
            for l, idx in neurons.items():
                tiny.down_proj_module(l).weight[:, idx] = 0.0
            cols = tiny.hf(input_ids=ids).logits
        finally:
            for l, w in saved.items():
                tiny.down_proj_module(l).weight.copy_(w)
    assert not torch.allclose(base, hooked)
    assert torch.allclose(hooked, cols, atol=1e-5)
    assert torch.equal(base, after)  # nothing left in the model


def _with_scaled_columns(loaded, neurons, alpha, fn):
    """Run fn() with W_down[:, j] multiplied by alpha for the given neurons (the reference), then restore."""
    saved = {l: loaded.down_proj_module(l).weight.detach().clone() for l in neurons}
    try:
        with torch.no_grad():
            for l, idx in neurons.items():
                loaded.down_proj_module(l).weight[:, idx] *= alpha
        return fn()
    finally:
        with torch.no_grad():
            for l, w in saved.items():
                loaded.down_proj_module(l).weight.copy_(w)


def _check_generation_matches_weight_scaling(loaded, flat, alphas, prompts, max_new_tokens):
    from hneuron_utils.text.generation import Sampling

    s = Sampling(max_new_tokens=max_new_tokens)
    neurons = interventions.by_layer(flat, loaded.d_ff)
    before = {k: v.detach().clone() for k, v in loaded.hf.state_dict().items()}
    base = interventions.generate_scaled(loaded, prompts, None, 1.0, s)
    changed = 0
    for alpha in alphas:
        ours = interventions.generate_scaled(loaded, prompts, flat, alpha, s)
        ref = _with_scaled_columns(loaded, neurons, alpha,
                                   lambda: interventions.generate_scaled(loaded, prompts, None, 1.0, s))
        assert [[x.token_ids for x in o] for o in ours] == [[x.token_ids for x in o] for o in ref], alpha
        changed += [[x.token_ids for x in o] for o in ours] != [[x.token_ids for x in o] for o in base]
    after = loaded.hf.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # no change left in the model
    assert interventions.generate_scaled(loaded, prompts, None, 1.0, s) == base
    return changed


def test_nnsight_scaling_in_generation_equals_scaling_down_proj_columns(tiny):
    """Greedy tokens with neurons scaled through nnsight at every step == with W_down columns scaled,
    for several alphas, on a batch with different prompt lengths (prefix sharing, padding, stopping)."""
    prompts = ["Capital of France?", "Who wrote Hamlet? Answer in one word.", "2+2="]
    flat = [3, 130, 128 * 2 + 5, 128 * 2 + 77]
    changed = _check_generation_matches_weight_scaling(tiny, flat, [0.0, 0.5, 3.0], prompts, 12)
    assert changed >= 1  # the intervention does something on this model (so equality is not vacuous)


def test_nnsight_forward_rejects_bad_layers(tiny):
    import pytest

    with pytest.raises(ValueError, match="out of range"):
        interventions.nnsight_forward(tiny, {tiny.n_layers: torch.tensor([0])}, 0.0)


import pytest  # noqa: E402


@pytest.mark.real_model
def test_nnsight_scaling_on_the_default_model_equals_scaling_down_proj_columns():
    from hneuron_utils import models

    loaded = models.load_model("qwen2.5-coder-1.5b-instruct", dtype="float32")
    # a spread of neurons in every third layer (the test does not need the H-neurons themselves)
    flat = [l * loaded.d_ff + n for l in range(0, loaded.n_layers, 3) for n in (11, 2024, 5000, 8000)]
    prompts = ["What is the capital of France? Respond with the answer only, without any explanation.",
               "Who wrote the novel Moby-Dick? Respond with the answer only, without any explanation."]
    changed = _check_generation_matches_weight_scaling(loaded, flat, [0.0, 60.0], prompts, 8)
    assert changed >= 1  # alpha = 60 on 40 neurons derails the answer: the equality is not vacuous


def test_greedy_accuracy_scores_the_scaled_model(tiny):
    """greedy_accuracy (nnsight scaling) judges the same answers as decoding under the pre-hook reference."""
    from hneuron_utils.data import QARecord
    from hneuron_utils.text.generation import Sampling, qa_prompt, sample_many
    from hneuron_utils.judges import Verdict

    recs = [QARecord(f"q{i}", q, ("zz",), "t") for i, q in enumerate(["Capital of France?", "Who wrote Hamlet?"])]
    flat = [3, 130, 261]
    with interventions.scaled(tiny, interventions.by_layer(flat, tiny.d_ff), 0.0):
        ref = [o[0].text for o in sample_many(tiny, [qa_prompt(tiny.tokenizer, r.question) for r in recs], 1,
                                              Sampling(max_new_tokens=6), progress=False)]

    class SameAsReference:  # "correct" = the reference answer for this question
        def judge(self, q, r, a):
            return Verdict(correct=r == ref[[x.question for x in recs].index(q)], refusal=False)

    assert interventions.greedy_accuracy(tiny, recs, SameAsReference(), flat, 0.0, max_new_tokens=6) == 1.0
    assert interventions.greedy_accuracy(tiny, recs, SameAsReference(), None, 0.0, max_new_tokens=6) < 1.0


def test_row_scaled_batch_equals_each_condition_and_weight_scaling(tiny):
    """Mixed α and mixed neuron sets in ONE decoding batch: each row's greedy tokens equal its own
    condition's run through the per-condition path and through scaled W_down columns (float32); the
    samples of a sampled run equal too (same seed keys)."""
    from hneuron_utils.text.generation import Sampling

    prompts = ["Capital of France?", "Who wrote Hamlet? Answer in one word.", "2+2="]
    h = [3, 130, 128 * 2 + 5, 128 * 2 + 77]
    r = [7, 128 + 9, 128 * 2 + 5, 128 * 2 + 100]  # overlaps h in one neuron
    conds = [(None, 1.0), (h, 0.0), (h, 3.0), (r, 0.0), (r, 2.5), (h, 1.0)]
    rows = [(p, c) for c in range(len(conds)) for p in range(len(prompts))]
    for s in (Sampling(max_new_tokens=10), Sampling(do_sample=True, max_new_tokens=10)):
        batch = interventions.generate_conditions(tiny, [prompts[p] for p, _ in rows], conds, [c for _, c in rows], s,
                                                  seed=5, keys=[str(p) for p, _ in rows], batch_size=7)
        for c, (flat, alpha) in enumerate(conds):
            own = interventions.generate_scaled(tiny, prompts, flat, alpha, s, seed=5, keys=[str(p) for p in range(3)])
            got = [batch[j][0].token_ids for j, (p, cc) in enumerate(rows) if cc == c]
            assert got == [o[0].token_ids for o in own], (s.do_sample, c)
            if not s.do_sample and flat is not None:
                ref = _with_scaled_columns(tiny, interventions.by_layer(flat, tiny.d_ff), alpha,
                                           lambda: interventions.generate_scaled(tiny, prompts, None, 1.0, s))
                assert got == [o[0].token_ids for o in ref], c
    plain = [batch[j][0].token_ids for j, (_, c) in enumerate(rows) if c == 0]
    assert plain != [batch[j][0].token_ids for j, (_, c) in enumerate(rows) if c == 2]  # not vacuous


def test_row_scaled_shared_prefix_is_computed_per_condition(tiny, monkeypatch):
    """Prompts sharing a prefix (a system turn): the prefix is prefilled once per condition, scaled as that
    condition says, and every row's greedy tokens equal its own condition's run and the run without prefix
    sharing (float32). The prefix path is really taken: the per-row forward sees one prefix row per condition."""
    from hneuron_utils.text.generation import Sampling

    head = "System: you are a terse assistant who answers in a few words.\nUser: "
    prompts = [head + q for q in ("Capital of France?", "Who wrote Hamlet? Answer in one word.", "2+2=")]
    h, r = [3, 130, 128 * 2 + 5], [7, 128 + 9, 128 * 2 + 100]
    conds = [(None, 1.0), (h, 0.0), (h, 3.0), (r, 2.5)]
    rows = [(p, c) for c in range(len(conds)) for p in range(len(prompts))]
    s = Sampling(max_new_tokens=8)
    real = interventions.row_scaled_forward
    seen: list[int] = []

    def spy(*a, **k):
        f = real(*a, **k)

        def g(model, rows, **kw):
            if kw.get("past_key_values") is not None and kw["past_key_values"].get_seq_length() == 0 \
                    and "attention_mask" not in kw:
                seen.append(len(rows))  # the prefix call: one row per condition
            return f(model, rows, **kw)
        g.per_row, g.prefix_groups = True, f.prefix_groups
        return g

    monkeypatch.setattr(interventions.scaling, "row_scaled_forward", spy)
    args = ([prompts[p] for p, _ in rows], conds, [c for _, c in rows], s)
    shared = interventions.generate_conditions(tiny, *args, batch_size=5)
    assert seen == [len(conds)]
    unshared = interventions.generate_conditions(tiny, *args, batch_size=5, share_prefix=False)
    assert [o[0].token_ids for o in shared] == [o[0].token_ids for o in unshared]
    for c, (flat, alpha) in enumerate(conds):
        own = interventions.generate_scaled(tiny, prompts, flat, alpha, s)
        assert [shared[j][0].token_ids for j, (_, cc) in enumerate(rows) if cc == c] == [o[0].token_ids for o in own]
    assert [o[0].token_ids for o in shared[:3]] != [o[0].token_ids for o in shared[6:9]]  # not vacuous


def test_row_scale_plan():
    class L:  # a stand-in with the two fields the plan reads
        d_ff, n_layers = 10, 3

    plan = interventions.row_scale_plan(L(), [(None, 0.0), ([1, 12], 0.0), ([12, 25], 2.0), ([1], 1.0)])
    assert [p[0] for p in plan] == [0, 1, 2]
    (l0, u0, m0), (l1, u1, m1), (l2, u2, m2) = plan
    assert u0.tolist() == [1] and m0[:, 0].tolist() == [1.0, 0.0, 1.0, 1.0]
    assert u1.tolist() == [2] and m1[:, 0].tolist() == [1.0, 0.0, 2.0, 1.0]
    assert u2.tolist() == [5] and m2[:, 0].tolist() == [1.0, 1.0, 2.0, 1.0]
    with pytest.raises(ValueError, match="out of range"):
        interventions.row_scale_plan(L(), [([31], 0.0)])


def test_the_alpha_write_on_a_remote_model_equals_the_local_one(tiny):
    """05's and 03's α write on NDIF: nnsight's generate with the write at every step, serialised as for the
    service and run in this process (remote="local"), gives the local engine's greedy tokens."""
    from hneuron_utils.models import remote
    from hneuron_utils.text.generation import Sampling, render

    sim = remote.simulated(tiny)
    prompts = [render(tiny.tokenizer, [{"role": "user", "content": q}]) for q in ("hello world", "the cat sat", "a")]
    flat = [tiny.d_ff + 1, tiny.d_ff + 5, 2 * tiny.d_ff + 7, 3]
    runs = {}
    for alpha in (0.0, 3.0, 1.0):
        local = interventions.generate_scaled(tiny, prompts, flat, alpha, Sampling(max_new_tokens=10), batch_size=2)
        far = interventions.generate_scaled(sim, prompts, flat, alpha, Sampling(max_new_tokens=10), batch_size=2)
        assert [o[0].token_ids for o in far] == [o[0].token_ids for o in local]
        runs[alpha] = [o[0].token_ids for o in far]
    assert runs[3.0] != runs[1.0] and runs[0.0] != runs[1.0]  # the write reaches the remote generation
    # several conditions: one request per condition, each row under its own
    conds = [(flat, 3.0), (None, 1.0)]
    mixed = interventions.generate_conditions(sim, prompts, conds, [0, 1, 0], Sampling(max_new_tokens=10))
    assert [o[0].token_ids for o in mixed] == [runs[3.0][0], runs[1.0][1], runs[3.0][2]]


def test_the_suppression_rule_reads_the_same_accuracy_remotely(tiny):
    from hneuron_utils.models import remote

    class Judge:  # "correct" = the answer contains a token's text; enough to compare two runs
        def judge(self, question, text, answers):
            from types import SimpleNamespace

            return SimpleNamespace(correct=any(a in text for a in answers))

    from types import SimpleNamespace

    recs = [SimpleNamespace(question=q, answers=("e", "a")) for q in ("hello world", "the cat sat", "a", "b c")]
    sets = {0.1: [tiny.d_ff + 1, 5], 0.5: list(range(tiny.d_ff, 2 * tiny.d_ff)), 1.0: []}
    far_base, far = interventions.suppression_accuracies(remote.simulated(tiny), recs, Judge(), sets, batch_size=2)
    base, here = interventions.suppression_accuracies(tiny, recs, Judge(), sets, batch_size=2)
    assert far_base == base and far[0.1] == here[0.1] and far[0.5] == here[0.5]
    assert math.isnan(far[1.0]) and math.isnan(here[1.0])  # an empty set has no accuracy, remotely or not
