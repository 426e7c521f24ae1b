"""The monitor inside the decoding loop: the same tokens as plain decoding, the same per-token CETT as a
teacher-forced pass, and a guard whose discarding is exact."""
import numpy as np
import pytest
import torch

from hneuron_utils import monitor
from hneuron_utils.monitor import live
from hneuron_utils.text import generation

QUESTIONS = ["What is the capital of France?", "Who wrote Hamlet?", "Name a prime number.", "Why is the sky blue?"]


def _prompts(tiny):
    return [generation.qa_prompt(tiny.tokenizer, q) for q in QUESTIONS]


def _flat(tiny):
    return [3, tiny.d_ff + 5, (tiny.n_layers - 1) * tiny.d_ff + 1, 7]


GREEDY = generation.Sampling(max_new_tokens=12)


def test_monitor_changes_no_token_and_matches_plain_decoding(tiny):
    prompts = _prompts(tiny)
    ref = generation.sample_many(tiny, prompts, 1, GREEDY, progress=False)
    on = live.monitored_sample(tiny, prompts, _flat(tiny), GREEDY, batch_size=3, progress=False)
    off = live.monitored_sample(tiny, prompts, _flat(tiny), GREEDY, batch_size=3, monitor=False, progress=False)
    for r, a, b in zip(ref, on, off):
        assert a.token_ids == b.token_ids == r[0].token_ids
        assert a.hcett.shape == (len(a.token_ids), 4) and b.hcett.shape == (len(b.token_ids), 0)


def test_live_features_equal_a_teacher_forced_pass(tiny):
    prompts = _prompts(tiny)
    got = live.monitored_sample(tiny, prompts, _flat(tiny), GREEDY, batch_size=4, resid_layer=1, progress=False)
    examples = [live.teacher_forced(tiny.tokenizer, p, s) for p, s in zip(prompts, got)]
    ref = monitor.token_cett(tiny, examples, _flat(tiny), batch_size=2)
    for s, r, ex in zip(got, ref, examples):
        np.testing.assert_allclose(s.hcett, r.numpy(), rtol=1e-4, atol=1e-6)
        with torch.no_grad():
            o = tiny.hf(input_ids=ex.input_ids[None], output_hidden_states=True)
        n = len(s.token_ids)
        np.testing.assert_allclose(s.resid, o.hidden_states[2][0, -n:].numpy(), rtol=1e-4, atol=1e-5)
        lp = torch.log_softmax(o.logits[0, -n - 1:-1].float(), -1).gather(1, torch.tensor(s.token_ids)[:, None])[:, 0]
        np.testing.assert_allclose(s.logprob, lp.numpy(), rtol=1e-4, atol=1e-5)


def test_a_guard_that_always_fires_abstains_after_its_resamples(tiny):
    always = live.Guard(lambda h, r, lp, spans: 1.0, tau=0.5, mode="resample", max_resamples=2)
    got = live.monitored_sample(tiny, _prompts(tiny), _flat(tiny), generation.Sampling(True, max_new_tokens=8),
                                guard=always, batch_size=4, progress=False)
    assert all(s.abstained and s.text == live.ABSTAIN_TEXT and s.resamples == 2 and len(s.alarms) == 3 for s in got)
    never = live.Guard(lambda h, r, lp, spans: 0.0, tau=0.5, mode="abstain")
    plain = live.monitored_sample(tiny, _prompts(tiny), _flat(tiny), generation.Sampling(True, max_new_tokens=8),
                                  batch_size=4, progress=False)
    got = live.monitored_sample(tiny, _prompts(tiny), _flat(tiny), generation.Sampling(True, max_new_tokens=8),
                                guard=never, batch_size=4, progress=False)
    assert [s.token_ids for s in got] == [s.token_ids for s in plain] and not any(s.abstained for s in got)


def test_discarding_a_sentence_is_exact(tiny):
    """Greedy: a sentence resampled after a discard is the same sentence, so the answer and its features must
    equal the unguarded ones although the discarded tokens are still (masked) in the cache."""
    for p in _prompts(tiny):
        seen = set()

        def once(h, r, lp, spans):
            fire = len(h) not in seen
            seen.add(len(h))
            return float(fire)

        ref = live.monitored_sample(tiny, [p], _flat(tiny), GREEDY, progress=False)[0]
        got = live.monitored_sample(tiny, [p], _flat(tiny), GREEDY, progress=False,
                                    guard=live.Guard(once, tau=0.5, mode="resample", max_resamples=1))[0]
        assert got.token_ids == ref.token_ids and not got.abstained and got.resamples >= 1
        assert got.spent > len(got.token_ids)
        np.testing.assert_allclose(got.hcett, ref.hcett, rtol=1e-4, atol=1e-6)


def test_bad_guard_settings_fail():
    with pytest.raises(ValueError, match="mode"):
        live.Guard(lambda *a: 0.0, 0.5, mode="retry")
