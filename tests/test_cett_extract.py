import copy

import pytest
import torch

from hneuron_utils import cett, generation, judge, models, tokens

QA = [("Capital of France?", "Paris is the capital.", ["Paris"]),
      ("Who wrote Hamlet?", "Shakespeare", ["William Shakespeare", "Shakespeare"]),
      ("Largest planet?", "I think it is Saturn, the ringed one!", ["Jupiter"]),
      ("2+2?", "4", ["4", "four"]),
      ("Longest river in the world by length according to most sources?", "The Nile", ["Nile"])]


def _examples(loaded):
    out = []
    for q, r, a in QA:
        v = judge.RuleJudge().judge(q, r, a)
        out.append(tokens.teacher_forced(loaded.tokenizer, generation.qa_prompt(loaded.tokenizer, q), r, v.span))
    return out


def _check(loaded, batch_size, ref_model=None):
    ex = _examples(loaded)
    a, o = cett.extract(loaded, ex, batch_size=batch_size, progress=False)
    ref_model = ref_model if ref_model is not None else copy.deepcopy(loaded.hf).double()
    ra, ro = cett.extract_reference(ref_model, ref_model.model.layers, ex)
    for got, ref in ((a, ra), (o, ro)):
        rel = (got.double() - ref).norm() / ref.norm()
        assert rel <= 1e-5, f"relative error {rel:.2e}"
    return a, o


def test_batched_nnsight_extraction_matches_float64_hook_reference(tiny):
    a, o = _check(tiny, batch_size=3)  # batches mix lengths: exercises left padding and position ids
    assert a.shape == (len(QA), tiny.n_layers, tiny.d_ff) and (a >= 0).all()


def test_batch_size_does_not_change_features(tiny):
    ex = _examples(tiny)
    a1, o1 = cett.extract(tiny, ex, batch_size=1, progress=False)
    a5, o5 = cett.extract(tiny, ex, batch_size=5, progress=False)
    for x, y in ((a1, a5), (o1, o5)):
        assert (x - y).norm() / y.norm() <= 1e-5


@pytest.mark.real_model
@pytest.mark.network
def test_real_default_model_matches_reference_in_float32():
    """Batched nnsight extraction vs per-example hooks on the default model, both forwards in float32
    (the bf16 copy upcast: a float64 copy of 1.5B parameters would not fit next to it), CETT of the
    reference in float64."""
    loaded = models.load_model("qwen2.5-coder-1.5b-instruct", dtype="bfloat16")
    loaded.hf.float()
    _check(loaded, batch_size=5, ref_model=loaded.hf)


def test_shared_prefix_does_not_change_features(tiny):
    ex = _examples(tiny)
    a1, o1 = cett.extract(tiny, ex, batch_size=2, share_prefix=False, progress=False)
    a2, o2 = cett.extract(tiny, ex, batch_size=2, share_prefix=True, progress=False)
    for x, y in ((a1, a2), (o1, o2)):
        assert (x - y).norm() / y.norm() <= 1e-5


def test_cached_extraction_resumes_and_reuses_shards(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("HNEURON_CACHE", str(tmp_path))
    ex = _examples(tiny)
    ids = [f"q{i}" for i in range(len(ex))]
    a, o, info = cett.extract_cached(tiny, ex, ids, batch_size=2, shard_size=2, progress=False)
    assert info["shards"] == 3 and info["computed now"] == 3 and a.dtype == torch.float16
    ref_a, _ = cett.extract(tiny, ex, batch_size=2, progress=False)
    assert torch.allclose(a.float(), ref_a, rtol=2e-3, atol=1e-6)
    shard = sorted(__import__("pathlib").Path(info["cache"]).glob("shard_*.pt"))[1]
    shard.unlink()  # as if interrupted before the second shard was written
    a2, o2, info2 = cett.extract_cached(tiny, ex, ids, batch_size=2, shard_size=2, progress=False)
    assert info2["computed now"] == 1 and torch.equal(a, a2) and torch.equal(o, o2)
    _, _, info3 = cett.extract_cached(tiny, ex[:4], ids[:4], batch_size=2, shard_size=2, progress=False)
    assert info3["cache"] != info["cache"]  # other examples, other key
