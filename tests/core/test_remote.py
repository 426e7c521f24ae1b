"""Activations on NDIF: the CETT pass's trace serialised as for the remote service and run in this process
(nnsight's remote="local"), against the local pass; and the clear errors of the NDIF backend."""

import time

import pytest
import torch

from hneuron_utils.features import cett
from hneuron_utils.models import remote

from qa_examples import examples as _examples


def _close(a, b, tol=1e-5):
    return float((a - b).norm() / b.norm().clamp_min(1e-30)) <= tol


def test_simulated_remote_extraction_equals_the_local_pass(tiny):
    ex = _examples(tiny)
    sim = remote.simulated(tiny)
    assert sim.remote == "local" and tiny.remote is False
    a, o, s = cett.extract(tiny, ex, batch_size=3, progress=False, with_signals=True)
    ra, ro, rs = cett.extract(sim, ex, batch_size=3, progress=False, with_signals=True)
    # the remote trace sends its CETT means back in float16 (as the stage cache stores them)
    assert _close(ra, a.half().float(), 2e-3) and _close(ro, o.half().float(), 2e-3)
    assert torch.equal(ra, ra.half().float()) and _close(rs["resid"], s["resid"])
    # the confidence is computed inside the remote trace from the model's logits, locally from the last states
    assert torch.allclose(rs["confidence"], s["confidence"], atol=1e-4)
    assert torch.allclose(cett.down_proj_column_norms(sim), cett.down_proj_column_norms(tiny), rtol=1e-6)


def test_a_simulated_model_has_its_own_stage_cache_key(tiny):
    from hneuron_utils.models import model_key

    assert model_key(remote.simulated(tiny)) != model_key(tiny)


def test_ndif_without_a_key_says_what_to_set(monkeypatch):
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    monkeypatch.setattr(remote, "ndif_api_key", lambda: None)
    with pytest.raises(remote.RemoteError, match="NDIF_API_KEY"):
        remote.load_for_activations("meta-llama/Llama-3.3-70B-Instruct", backend="ndif")


def test_ndif_rejects_a_packaged_model_and_an_unhosted_one(monkeypatch):
    monkeypatch.setenv("NDIF_API_KEY", "test-key")
    with pytest.raises(remote.RemoteError, match="Hugging Face id"):
        remote.check_ndif("smollm2-135m-instruct")
    monkeypatch.setattr(remote, "hosted_models", lambda: {"meta-llama/Llama-3.1-8B": "RUNNING",
                                                           "meta-llama/Llama-3.1-70B": "DOWN"})
    with pytest.raises(remote.RemoteError, match="Running now: meta-llama/Llama-3.1-8B"):
        remote.check_ndif("meta-llama/Llama-3.1-70B")
    remote.check_ndif("meta-llama/Llama-3.1-8B")  # running: no error


def test_ndif_unreachable_is_a_clear_error_within_seconds(monkeypatch):
    """No network here: nnsight's status call reports the service down; the backend stops at once."""
    monkeypatch.setenv("NDIF_API_KEY", "test-key")
    t0 = time.perf_counter()
    with pytest.raises(remote.RemoteError, match="did not answer|does not report"):
        remote.check_ndif("meta-llama/Llama-3.3-70B-Instruct")
    assert time.perf_counter() - t0 < 60


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="activations_backend"):
        remote.load_for_activations("tiny-random", backend="cloud")


def test_for_cett_takes_the_backend(tiny):
    from hneuron_utils import models

    assert models.for_cett(tiny, "tiny-random", "auto", backend="local") is tiny
    assert models.for_cett(tiny, "tiny-random", "auto", backend="ndif-local").remote == "local"
    with pytest.raises(ValueError, match="activations_backend"):
        models.for_cett(tiny, "tiny-random", "auto", backend="cloud")


def _chat_prompts(loaded, questions):
    from hneuron_utils.text.generation import render

    return [render(loaded.tokenizer, [{"role": "user", "content": q}]) for q in questions]


QUESTIONS = ["hello world", "the cat sat on the mat and then", "a", "which river flows through Paris?"]


def test_remote_generation_gives_the_local_loops_greedy_tokens(tiny, monkeypatch):
    from hneuron_utils.text.generation import Sampling, sample_many

    prompts = _chat_prompts(tiny, QUESTIONS)
    first = sample_many(tiny, prompts[:1], 1, Sampling(max_new_tokens=12), progress=False)[0][0].token_ids
    # the random model never ends its turn: make the 4th token of the first answer an end-of-turn token, so that
    # both endings (stopped, and cut at max_new_tokens) are compared
    monkeypatch.setattr(type(tiny), "stop_token_ids", lambda self: [first[3]])
    local = sample_many(tiny, prompts, 1, Sampling(max_new_tokens=12), batch_size=3, progress=False)
    far = sample_many(remote.simulated(tiny), prompts, 1, Sampling(max_new_tokens=12), batch_size=3, progress=False)
    assert [(o[0].token_ids, o[0].text, o[0].stopped) for o in far] == \
        [(o[0].token_ids, o[0].text, o[0].stopped) for o in local]
    assert local[0][0].stopped and local[0][0].token_ids == first[:3] and any(not o[0].stopped for o in local)


def test_remote_generation_refuses_what_only_the_local_loop_does(tiny):
    from hneuron_utils.text.generation import Sampling, sample_many

    sim = remote.simulated(tiny)
    with pytest.raises(ValueError, match="activations_backend 'local'"):
        sample_many(sim, _chat_prompts(tiny, ["a"]), 1, Sampling(max_new_tokens=4), stop_at_newline=True)
    with pytest.raises(ValueError, match="identical samples"):
        sample_many(sim, _chat_prompts(tiny, ["a"]), 2, Sampling(max_new_tokens=4))


def test_remote_sampling_draws_k_completions_per_prompt(tiny):
    from hneuron_utils.text.generation import Sampling, sample_many

    got = sample_many(remote.simulated(tiny), _chat_prompts(tiny, QUESTIONS[:2]), 3,
                      Sampling(do_sample=True, temperature=1.0, top_k=50, top_p=1.0, max_new_tokens=6), progress=False)
    assert [len(o) for o in got] == [3, 3]
    assert all(len(s.token_ids) <= 6 for o in got for s in o)
