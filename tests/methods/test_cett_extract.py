import copy

import pytest
import torch

from hneuron_utils.features import cett
from hneuron_utils.text import generation, tokens
from hneuron_utils import models

from qa_examples import QA, examples as _examples


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


def _reference_signals(hf_model, examples):
    """Per example, one plain forward with all hidden states and full logits (float64 model)."""
    R, C = [], []
    caught = {}
    layers = hf_model.model.layers
    hooks = [layer.register_forward_hook(lambda mod, inp, out, i=i: caught.__setitem__(i, out[0] if isinstance(
        out, tuple) else out)) for i, layer in enumerate(layers)]  # each decoder layer's output (before the final norm)
    for ex in examples:
        out = hf_model(input_ids=ex.input_ids[None])
        hs = [caught[i] for i in range(len(layers))]
        m = ex.answer
        R.append(torch.stack([h[0][m].mean(0) for h in hs]).float())
        logp = torch.log_softmax(out.logits[0].double(), -1)
        pos = m.nonzero().flatten()
        lp = logp[pos - 1, ex.input_ids[pos]]
        ent = -(logp[pos - 1].exp() * logp[pos - 1]).sum(-1)
        C.append(torch.stack([lp.mean(), lp.min(), ent.mean()]).float())
    for hk in hooks:
        hk.remove()
    return torch.stack(R), torch.stack(C)


@pytest.mark.parametrize("share_prefix", [True, False])
def test_signals_match_a_plain_forward(tiny, share_prefix):
    ex = _examples(tiny)
    a, o, sig = cett.extract(tiny, ex, batch_size=3, progress=False, share_prefix=share_prefix, with_signals=True)
    ref = copy.deepcopy(tiny.hf).double()
    r_ref, c_ref = _reference_signals(ref, ex)
    assert (sig["resid"] - r_ref).norm() / r_ref.norm() <= 1e-5
    assert torch.allclose(sig["confidence"], c_ref, rtol=1e-4, atol=1e-4)
    a2, o2 = cett.extract(tiny, ex, batch_size=3, progress=False, share_prefix=share_prefix)
    assert torch.equal(a, a2) and torch.equal(o, o2)  # signals do not change the CETT


def test_cached_signals_round_trip(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("HNEURON_CACHE", str(tmp_path))
    ex = _examples(tiny)
    ids = [f"q{i}" for i in range(len(ex))]
    _, _, info = cett.extract_cached(tiny, ex, ids, batch_size=2, shard_size=2, progress=False)
    got_ids, resid, conf = cett.load_signals(info["cache"])
    assert got_ids == ids and resid.shape == (len(ex), tiny.n_layers, tiny.d_model) and conf.shape == (len(ex), 3)
    assert torch.isfinite(conf).all() and (conf[:, 0] <= 0).all() and (conf[:, 1] <= conf[:, 0]).all()


@pytest.mark.real_model
@pytest.mark.network
def test_float32_features_and_converged_h_neurons_do_not_depend_on_the_batch():
    """Issue of record: in bfloat16 an example's CETT changed with its batch, and the L1 set changed between
    runs. On a real model (SmolLM2, 46,080 neurons) in float32: two extractions with different batch sizes
    and prefix sharing agree to float32 rounding, and the converged probe's positive set is the same set
    for both feature copies and for two solver seeds."""
    import numpy as np

    from hneuron_utils import data
    from hneuron_utils.probes import probe

    loaded = models.load_model("smollm2-135m-instruct", dtype="float32")
    recs = data.load_dataset("triviaqa")[:32]
    ex, y = [], []
    for i, r in enumerate(recs):
        resp = r.answers[0] if i % 2 == 0 else recs[(i + 7) % len(recs)].answers[0]  # right / wrong answer
        ex.append(tokens.teacher_forced(loaded.tokenizer, generation.qa_prompt(loaded.tokenizer, r.question), resp, None))
        y.append(i % 2)
    a1, o1 = cett.extract(loaded, ex, batch_size=3, progress=False)
    a2, o2 = cett.extract(loaded, ex, batch_size=16, share_prefix=False, progress=False)
    rel = ((a1 - a2).abs() / a2.abs().clamp_min(1e-4)).max()
    assert rel <= 1e-3, f"float32 features changed by {rel:.2e} with the batch"
    y = np.array(y)
    sets = []
    for a, o, seed in ((a1, o1, 0), (a2, o2, 0), (a1, o1, 1)):
        X, yy = probe.training_set(a.numpy(), o.numpy(), y, "3-vs-1")
        m = probe.fit_l1(X, yy, C=10.0, seed=seed)
        assert m.converged
        sets.append(set(np.flatnonzero(m.coef_[0] > 0).tolist()))
    assert sets[0] and sets[0] == sets[1] == sets[2]


def test_features_record_names_the_stage_key_not_a_path(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("HNEURON_CACHE", str(tmp_path / "a"))
    ex = _examples(tiny)
    ids = [f"q{i}" for i in range(len(ex))]
    _, _, info = cett.extract_cached(tiny, ex, ids, batch_size=2, shard_size=2, progress=False)
    record = {"key": info["key"]}
    assert cett.features_dir(record) == __import__("pathlib").Path(info["cache"])
    monkeypatch.setenv("HNEURON_CACHE", str(tmp_path / "b"))  # another machine: same key, no shards
    with pytest.raises(FileNotFoundError, match="run notebook 02"):
        cett.features_dir(record)
