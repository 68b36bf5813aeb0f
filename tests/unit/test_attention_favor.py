"""FAVOR+: unbiased features, variance ordering, convergence to softmax, stability, padding, grads, chunking."""
from __future__ import annotations

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from raygrid.attention import FavorParams
from raygrid.attention.favor import draw_projection, favor_attention, favor_attention_dense
from raygrid.attention.softmax import softmax_attention
from raygrid.attention.favor import log_features, random_features


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _qkv(b=1, h=2, n=32, d=16, std=1.0, seed=0):
    gen = _gen(seed)
    q, k, v = (torch.randn(b, h, n, d, generator=gen) for _ in range(3))
    return q * std, k * std, v


def _kernel_estimate(q, k, projections, feature_map):
    """φ(q)ᵀφ(k) for each of T projections (T, m, D) -> (T,)."""
    phi_q, phi_k = (random_features(x[None], projections, feature_map) for x in (q, k))  # (T, 1, M)
    return (phi_q * phi_k).sum(-1)[:, 0]


def _pair(d=8, norm=0.8, seed=0):
    gen = _gen(seed)
    q, k = torch.randn(d, generator=gen), torch.randn(d, generator=gen)
    return q / q.norm() * norm, k / k.norm() * norm


def test_projection_shapes_orthogonality_determinism():
    p = draw_projection(40, 16, "positive", True, _gen(1))
    assert p.shape == (40, 16) and draw_projection(40, 16, "hyperbolic", True, _gen(1)).shape == (20, 16)
    block = p[:16] / p[:16].norm(dim=1, keepdim=True)
    torch.testing.assert_close(block @ block.T, torch.eye(16), atol=1e-5, rtol=0)
    assert p.norm(dim=1).std() > 0.1  # chi-distributed norms, not all √D
    torch.testing.assert_close(p, draw_projection(40, 16, "positive", True, _gen(1)))
    assert not torch.equal(p, draw_projection(40, 16, "positive", True, _gen(2)))
    with pytest.raises(ValueError):
        draw_projection(7, 16, "hyperbolic", True, _gen())


@pytest.mark.parametrize("orthogonal", [False, True])
@pytest.mark.parametrize("feature_map", ["positive", "hyperbolic"])
def test_features_unbiased_for_exp_dot(feature_map, orthogonal):
    q, k = _pair()
    draws = 3000
    projections = torch.stack([draw_projection(16, 8, feature_map, orthogonal, _gen(i)) for i in range(draws)])
    estimates = _kernel_estimate(q, k, projections, feature_map)
    standard_error = estimates.std() / math.sqrt(draws)
    assert abs(estimates.mean() - torch.exp(q @ k)) < 4 * standard_error + 1e-3


def test_hyperbolic_variance_not_above_positive_for_same_omegas():
    q, k = _pair(seed=3)
    omegas = torch.randn(4000, 16, 8, generator=_gen(5))  # the same m = 16 ω per draw for both maps
    var_positive = _kernel_estimate(q, k, omegas, "positive").var()
    var_hyperbolic = _kernel_estimate(q, k, omegas, "hyperbolic").var()
    assert var_hyperbolic <= var_positive


def test_kernel_matches_unstabilised_float64_formula():
    q, k, v = _qkv(n=20, d=8)
    params = FavorParams(feature_map="positive", nb_features=32, stabilizer=1e-12)
    projection = draw_projection(32, 8, "positive", True, _gen())
    root = 8**-0.25
    phi_q = log_features(q.double() * root, projection.double(), "positive").exp()
    phi_k = log_features(k.double() * root, projection.double(), "positive").exp()
    attn = phi_q @ phi_k.transpose(-1, -2)
    expected = (attn @ v.double()) / attn.sum(-1, keepdim=True)
    out = favor_attention(q, k, v, params=params, projection=projection)
    torch.testing.assert_close(out.double(), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("feature_map", ["positive", "hyperbolic"])
def test_error_vs_softmax_falls_with_nb_features(feature_map):
    errors = []
    for nb in (16, 128, 1024):
        err = 0.0
        for seed in range(3):
            q, k, v = _qkv(n=64, d=16, std=0.5, seed=seed)
            exact = softmax_attention(q, k, v)
            params = FavorParams(feature_map=feature_map, nb_features=nb)
            projection = draw_projection(nb, 16, feature_map, True, _gen(seed))
            out = favor_attention(q, k, v, params=params, projection=projection)
            err += float((out - exact).norm() / exact.norm()) / 3
        errors.append(err)
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.5 * errors[0]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_large_norm_low_precision_is_finite(dtype):
    q, k, v = _qkv(n=64, d=32, std=30.0)  # ‖x‖² ~ 3e4: raw exp() overflows any dtype
    params = FavorParams(nb_features=64)
    q, k, v = (t.to(dtype).requires_grad_(True) for t in (q, k, v))
    try:
        out = favor_attention(q, k, v, params=params, projection=draw_projection(64, 32, "hyperbolic", True, _gen()))
    except RuntimeError as error:  # an op without a CPU kernel for this dtype
        pytest.skip(f"{dtype} unsupported on this CPU build: {error}")
    assert out.dtype == dtype and torch.isfinite(out).all()
    out.float().sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


@pytest.mark.parametrize("feature_map", ["positive", "hyperbolic"])
def test_padding_invariance(feature_map):
    q, k, v = _qkv(n=10)
    params = FavorParams(feature_map=feature_map, nb_features=64)
    projection = draw_projection(64, 16, feature_map, True, _gen())
    garbage = [1e3 * torch.randn(1, 2, 6, 16) for _ in range(3)]  # padded keys/values must not matter
    padded = [torch.cat([t, g], dim=2) for t, g in zip((q, k, v), garbage)]
    mask = torch.arange(16)[None] < 10
    out = favor_attention(*padded, mask, params=params, projection=projection)[:, :, :10]
    expected = favor_attention(q, k, v, params=params, projection=projection)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


def test_gradients_flow_and_determinism():
    q, k, v = (t.requires_grad_(True) for t in _qkv())
    params = FavorParams(nb_features=32)
    out = favor_attention(q, k, v, params=params, projection=draw_projection(32, 16, "hyperbolic", True, _gen(7)))
    out.pow(2).sum().backward()
    assert all(torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0 for t in (q, k, v))
    again = favor_attention(q, k, v, params=params, projection=draw_projection(32, 16, "hyperbolic", True, _gen(7)))
    assert torch.equal(out, again)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|: the acceptance measure of the kernel tests."""
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("chunk_rows", [None, 4, 7])
@pytest.mark.parametrize("feature_map", ["positive", "hyperbolic"])
def test_chunked_kernel_equals_the_dense_formula_and_its_gradients(feature_map, chunk_rows):
    q, k, v = _qkv(b=2, h=2, n=23, std=1.5, seed=4)
    real = torch.ones(2, 23, dtype=torch.bool)
    real[0, 5:9] = False  # a hole, not only right padding
    real[1, 15:] = False
    garbage = torch.where(real[:, None, :, None], 0.0, 1e4)  # padded keys/values must not matter
    k, v = k + garbage, v + garbage
    params = FavorParams(feature_map=feature_map, nb_features=32)
    projection = draw_projection(32, 16, feature_map, True, _gen(1))
    weights = torch.randn(2, 2, 23, 16, generator=_gen(9))
    results = []
    for kernel, extra in ((favor_attention, {"chunk_rows": chunk_rows}), (favor_attention_dense, {})):
        inputs = [t.clone().requires_grad_(True) for t in (q, k, v)]
        out = kernel(*inputs, real, params=params, projection=projection, **extra)
        (out * weights).sum().backward()
        results.append((out.detach(), *(t.grad for t in inputs)))
    for chunked, dense in zip(*results):
        assert _rel(chunked, dense) <= 1e-5


class _LargestTensor(TorchDispatchMode):
    """The largest number of elements of any tensor an op returns (forward and backward)."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        sizes = [t.numel() for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        self.largest = max([self.largest, *sizes])
        return out


def test_no_tensor_of_feature_size_is_built_forward_or_backward():
    b, h, n, d, m = 2, 2, 64, 16, 32
    q, k, v = (t.requires_grad_(True) for t in _qkv(b=b, h=h, n=n, d=d))
    params = FavorParams(nb_features=m)
    projection = draw_projection(m, d, "hyperbolic", True, _gen())
    sizes = {}
    for name, kernel, extra in (("chunked", favor_attention, {"chunk_rows": 8}), ("dense", favor_attention_dense, {})):
        with _LargestTensor() as probe:
            kernel(q, k, v, params=params, projection=projection, **extra).sum().backward()
        sizes[name] = probe.largest
    assert sizes["dense"] >= b * h * n * m  # the probe sees the dense formula's (B, H, N, M) features
    # chunked: inputs, outputs and their gradients (B, H, N, D), features one chunk at a time
    assert sizes["chunked"] <= max(b * h * n * d, b * h * 8 * m) < b * h * n * m
