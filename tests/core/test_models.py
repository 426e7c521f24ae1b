import pytest
import torch

from hneuron_utils.text import generation
from hneuron_utils import models


def test_tiny_random_layout(tiny):
    assert tiny.source == "tiny" and tiny.layers_path == "model.layers"
    assert (tiny.n_layers, tiny.d_ff, tiny.d_model) == (3, 128, 64)
    assert tiny.down_proj_module(2) is tiny.hf.model.layers[2].mlp.down_proj
    assert tiny.tokenizer.padding_side == "left"
    assert tiny.tokenizer.convert_tokens_to_ids("<|im_end|>") in tiny.stop_token_ids()
    assert not any(p.requires_grad for p in tiny.hf.parameters())


def test_tiny_random_is_deterministic():
    a = models.load_model("tiny-random", dtype="float32").hf.model.layers[0].mlp.up_proj.weight
    b = models.load_model("tiny-random", dtype="float32").hf.model.layers[0].mlp.up_proj.weight
    assert torch.equal(a, b)


def test_nnsight_reads_down_proj_input(tiny):
    enc = generation.encode(tiny.tokenizer, ["hello there", "hi"], templated=False)
    with tiny.lm.trace(dict(enc)):
        z = tiny.down_proj(1).input.save()
        h = tiny.down_proj(1).output.save()
    assert z.shape[:2] == enc["input_ids"].shape and z.shape[-1] == tiny.d_ff
    torch.testing.assert_close(h, z @ tiny.down_proj_module(1).weight.T)


def test_unknown_name_lists_known_names():
    with pytest.raises(models.ModelError) as e:
        models.load_model("qwen-99b")
    assert "qwen2.5-coder-1.5b-instruct" in str(e.value) and "tiny-random" in str(e.value)


def test_unloadable_local_dir_fails_clearly(tmp_path):
    with pytest.raises(models.ModelError, match="Could not load") as e:
        models.load_model(str(tmp_path))  # exists, but holds no model
    assert "smollm2-135m-instruct" in str(e.value)


def test_non_gated_architecture_is_rejected():
    from transformers import GPT2Config, GPT2LMHeadModel

    m = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=10))
    with pytest.raises(models.ModelError, match="could not find the decoder layers"):
        models.find_layers_path(m)


def test_resolve_dtype():
    assert models.resolve_dtype("float32") == torch.float32
    assert models.resolve_dtype("auto", "cpu") in (torch.bfloat16, torch.float32)
    with pytest.raises(models.ModelError):
        models.resolve_dtype("int8")


@pytest.mark.real_model
@pytest.mark.network
@pytest.mark.parametrize("name", ["smollm2-135m-instruct", "qwen2.5-coder-1.5b-instruct"])
def test_real_model_knows_the_capital_of_france(name):
    m = models.load_model(name)
    assert m.dtype == models.resolve_dtype("auto")
    out = generation.generate(m, [generation.qa_prompt(m.tokenizer, "What is the capital of France?")],
                              generation.Sampling(max_new_tokens=20))[0]
    assert "paris" in out.lower(), out


def test_lm_head_input_made_contiguous_without_changing_logits(tiny):
    """The pre-hook that avoids torch's batched copy of the head weight leaves logits unchanged."""
    import torch

    ids = torch.randint(5, 200, (3, 9))
    with torch.no_grad():
        full = tiny.hf(input_ids=ids).logits[:, -1]
        last = tiny.hf(input_ids=ids, logits_to_keep=1).logits[:, -1]
    assert tiny.hf.get_output_embeddings()._forward_pre_hooks
    assert torch.allclose(full, last, atol=1e-5)


def test_loading_shows_no_weight_loading_bar(tmp_path, capsys):
    """Executed notebooks must not fill with transformers' "Loading weights" bars, whichever path loads."""
    from hneuron_utils import models
    from hneuron_utils.models import tiny

    tok = tiny.build_tokenizer()
    tiny.build_model(tok, dtype=torch.float32).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    models.loading._load_hf(str(tmp_path), torch.float32, torch.device("cpu"))
    err = capsys.readouterr().err
    assert "Loading weights" not in err
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled()  # restored afterwards
