import torch

from hneuron_utils.features import cett


def test_cett_matches_outer_product_definition():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(6, 10, generator=g, dtype=torch.float64)   # [d_model, d_ff]
    z = torch.randn(3, 10, generator=g, dtype=torch.float64)   # [tokens, d_ff]
    h = z @ W.T
    got = cett.cett(z, h, W.norm(dim=0))
    # definition: ‖W[:, j] z_j‖ / ‖h‖, with the outer product materialised
    ref = torch.stack([(W * z[t]).norm(dim=0) / h[t].norm() for t in range(3)])
    torch.testing.assert_close(got.double(), ref, rtol=1e-6, atol=0)


def test_column_norms_shape(tiny):
    n = cett.down_proj_column_norms(tiny)
    assert n.shape == (tiny.n_layers, tiny.d_ff)
    torch.testing.assert_close(n[1], tiny.down_proj_module(1).weight.float().norm(dim=0))
