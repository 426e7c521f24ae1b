"""Reusing the residual entering a layer: bit-identical to the full forward pass on the same batch."""

import pytest
import torch

from hneuron_utils.models import lower_layers, tiny


def _batch(tok):
    enc = tok(["the cat sat", "a"], return_tensors="pt", padding=True)
    pos = (enc.attention_mask.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": enc.input_ids, "attention_mask": enc.attention_mask, "position_ids": pos}


def test_starting_at_a_layer_equals_the_full_forward_after_the_upper_layers_change():
    tok = tiny.build_tokenizer()
    model = tiny.build_model(tok).eval()
    batch = _batch(tok)
    h = lower_layers.residual_entering(model, 2, **batch)
    assert h.shape == (2, batch["input_ids"].shape[1], model.config.hidden_size)
    with torch.no_grad():  # change the top layer, as a tuning of its MLP would
        model.model.layers[2].mlp.up_proj.weight.mul_(1.5)
        full = model(**batch).logits
        with lower_layers.starting_at(model, 2, h):
            reused = model(**batch).logits
    assert torch.equal(full, reused)
    # outside the context the layers run again (no stale instance attribute left behind)
    assert "forward" not in vars(model.model.layers[0])
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, full)


def test_changing_a_lower_layer_is_not_seen_and_a_wrong_batch_raises():
    tok = tiny.build_tokenizer()
    model = tiny.build_model(tok).eval()
    batch = _batch(tok)
    h = lower_layers.residual_entering(model, 1, **batch)
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight.mul_(2.0)
        full = model(**batch).logits
        with lower_layers.starting_at(model, 1, h):
            reused = model(**batch).logits
    assert not torch.equal(full, reused)  # the reuse is only valid while the lower layers stay as they were
    other = tok(["longer text here, many tokens"], return_tensors="pt")
    with pytest.raises(ValueError, match="only for the batch"), lower_layers.starting_at(model, 1, h):
        model(input_ids=other.input_ids)
    with pytest.raises(ValueError, match="must lie in"):
        lower_layers.residual_entering(model, 0, **batch)


def test_gradients_reach_the_upper_layers_and_frozen_below():
    tok = tiny.build_tokenizer()
    model = tiny.build_model(tok)
    batch = _batch(tok)
    for n, p in model.named_parameters():
        p.requires_grad = n.startswith("model.layers.2.mlp.")
    assert lower_layers.frozen_below(model, 2)
    model.model.layers[1].mlp.up_proj.weight.requires_grad = True
    assert not lower_layers.frozen_below(model, 2)
    model.model.layers[1].mlp.up_proj.weight.requires_grad = False
    h = lower_layers.residual_entering(model, 2, **batch)
    with lower_layers.starting_at(model, 2, h):
        loss = model(**batch, labels=batch["input_ids"]).loss
    loss.backward()
    assert model.model.layers[2].mlp.up_proj.weight.grad is not None
    assert model.model.layers[1].mlp.up_proj.weight.grad is None


def test_the_store_reuses_per_batch_and_notices_a_changed_lower_weight():
    tok = tiny.build_tokenizer()
    model = tiny.build_model(tok).eval()
    for n, p in model.named_parameters():
        p.requires_grad = n.startswith("model.layers.2.")
    store = lower_layers.ResidualStore(2)
    batch = _batch(tok)
    with torch.no_grad():
        first = store(model, **batch).logits
        model.model.layers[2].mlp.down_proj.weight.mul_(0.5)
        again = store(model, **batch).logits
        assert (store.computed, store.reused) == (1, 1)
        assert torch.equal(again, model(**batch).logits) and not torch.equal(first, again)
        model.model.layers[1].mlp.down_proj.weight.mul_(0.5)  # a lower weight changed in place: a new residual
        store(model, **batch)
    assert store.computed == 2
    model.model.layers[0].mlp.up_proj.weight.requires_grad = True
    with pytest.raises(ValueError, match="requires a gradient"):
        store(model, **batch)


def test_a_store_across_models_shares_residuals_only_where_the_lower_weights_match():
    tok = tiny.build_tokenizer()
    base = tiny.build_model(tok).eval()
    tuned = tiny.build_model(tok).eval()
    other = tiny.build_model(tok, seed=1).eval()
    with torch.no_grad():
        tuned.model.layers[2].mlp.up_proj.weight.mul_(1.1)
    tuned.config._name_or_path = "somewhere/else"
    store = lower_layers.ResidualStore(2, across_models=True, require_frozen=False)  # inference: grads stay on
    batch = _batch(tok)
    with torch.no_grad():
        store(base, **batch)
        got = store(tuned, **batch).logits
        assert (store.computed, store.reused) == (1, 1) and torch.equal(got, tuned(**batch).logits)
        store(other, **batch)  # another model's lower weights: computed afresh
    assert store.computed == 2


def test_the_same_weights_in_another_dtype_get_their_own_residual():
    tok = tiny.build_tokenizer()
    model = tiny.build_model(tok).eval()
    store = lower_layers.ResidualStore(2, across_models=True, require_frozen=False)
    batch = _batch(tok)
    with torch.no_grad():
        store(model, **batch)
        store(model.to(torch.bfloat16), **batch)
    assert store.computed == 2
