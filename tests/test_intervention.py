import torch

from hneuron_utils import intervention


def test_scaling_neurons_equals_scaling_down_proj_columns(tiny):
    ids = torch.randint(5, 200, (2, 7))
    neurons = intervention.by_layer([3, 130, 128 * 2 + 5], tiny.d_ff)
    assert set(neurons) == {0, 1, 2}
    with torch.no_grad():
        base = tiny.hf(input_ids=ids).logits
        with intervention.scaled(tiny, neurons, 0.0):
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
