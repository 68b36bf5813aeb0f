"""LSH attention: exactness limits, bucket masking, sort/unsort, round combination, padding, grads."""
from __future__ import annotations

import pytest
import torch

from raygrid.attention import LshParams
from raygrid.attention.lsh import lsh_attention
from raygrid.attention.softmax import softmax_attention
from raygrid.attention.lsh import _gather, _invert, _sort_order, draw_rotations, hash_vectors, lsh_trace
from raygrid.attention.lsh import num_buckets_for
from raygrid.attention.softmax import softmax_weights


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _qkv(b=2, h=2, n=37, d=16, seed=0):
    gen = _gen(seed)
    return tuple(torch.randn(b, h, n, d, generator=gen) for _ in range(3))


def _mask(b=2, n=37, cut=29):
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[-1, cut:] = False
    return mask


def _clustered(n=48, d=16, clusters=4, seed=0):
    """q and k near a few shared directions, so buckets are populated and meaningful."""
    gen = _gen(seed)
    centres = torch.randn(clusters, d, generator=gen) * 3
    labels = torch.arange(n) % clusters
    q = centres[labels] + 0.3 * torch.randn(n, d, generator=gen)
    k = centres[labels] + 0.3 * torch.randn(n, d, generator=gen)
    return q[None, None], k[None, None], torch.randn(1, 1, n, d, generator=gen)


@pytest.mark.parametrize("mask_within_chunks", [False, True])
@pytest.mark.parametrize("round_combine", ["mean", "weighted"])
def test_one_bucket_one_window_is_exact_softmax(mask_within_chunks, round_combine):
    q, k, v = _qkv()
    params = LshParams(num_buckets=1, chunk_size=64, num_hashes=3, mask_within_chunks=mask_within_chunks,
                       round_combine=round_combine)
    out = lsh_attention(q, k, v, _mask(), params=params, generator=_gen())
    real = _mask()[:, None, :, None]  # padded queries: zero in LSH (the study's rule), ignored downstream
    torch.testing.assert_close(out, softmax_attention(q, k, v, _mask()) * real, atol=1e-5, rtol=1e-5)


def test_window_covering_sequence_is_exact_whatever_the_hash():
    # Hashing permutes tokens, neighbour chunks cover everything: exact only if unsort restores order.
    q, k, v = _qkv()
    params = LshParams(num_buckets=8, chunk_size=8, look_backward=4, look_forward=4, num_hashes=2)
    out = lsh_attention(q, k, v, _mask(), params=params, generator=_gen(3))
    expected = softmax_attention(q, k, v, _mask()) * _mask()[:, None, :, None]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_sort_unsort_roundtrip_and_padding_last():
    buckets = torch.randint(0, 6, (2, 2, 3, 20), generator=_gen())
    real = torch.arange(20)[None].expand(2, 20) < torch.tensor([[20], [13]])
    order = _sort_order(buckets, real, 6)
    sorted_buckets = _gather(torch.where(real[:, None, None], buckets, 6), order)
    assert (sorted_buckets.diff(dim=-1) >= 0).all()
    assert (order[1, ..., 13:] >= 13).all()  # padding sorts last
    x = torch.randn(2, 2, 1, 20, 5)
    torch.testing.assert_close(_gather(_gather(x, order), _invert(order)), x.expand(2, 2, 3, 20, 5))


def test_hash_is_shared_and_scale_invariant():
    rotations = draw_rotations(16, 2, 8, _gen())
    x = torch.randn(1, 1, 10, 16)
    assert torch.equal(hash_vectors(x, rotations), hash_vectors(5 * x, rotations))
    assert hash_vectors(x, rotations).max() < 8
    assert [num_buckets_for(LshParams(chunk_size=64), n) for n in (4096, 100, 192, 1)] == [64, 2, 4, 2]


def test_mask_within_chunks_attends_only_own_bucket():
    q, k, v = _clustered()
    masked = LshParams(num_buckets=4, chunk_size=8, num_hashes=2, mask_within_chunks=True)
    _, trace = lsh_trace(q, k, v, params=masked, generator=_gen(1))
    same = trace.query_buckets[..., :, None] == trace.key_buckets[..., None, :]  # (B, H, R, N, N)
    own_bucket = ~trace.fallback  # rows with a same-bucket key in the window (see the fallback rule)
    assert own_bucket.float().mean() > 0.9
    assert (trace.weights * ~same)[own_bucket].abs().max() == 0
    assert trace.weights[same].sum() > 0
    unmasked = masked.model_copy(update={"mask_within_chunks": False})
    _, trace = lsh_trace(q, k, v, params=unmasked, generator=_gen(1))
    assert trace.weights[~same].sum() > 0  # without the mask, windows mix buckets


def test_window_limits_keys_per_query():
    q, k, v = _qkv(b=1, h=1, n=64)
    params = LshParams(num_buckets=8, chunk_size=8, look_backward=1, num_hashes=1)
    _, trace = lsh_trace(q, k, v, params=params, generator=_gen())
    assert ((trace.weights > 0).sum(-1) <= 16).all()


@pytest.mark.parametrize("combine", ["mean", "weighted"])
def test_rounds_combine_as_documented(combine):
    q, k, v = _clustered(seed=2)
    params = LshParams(num_buckets=4, chunk_size=8, num_hashes=3, mask_within_chunks=True, round_combine=combine)
    out, trace = lsh_trace(q, k, v, params=params, generator=_gen(4))
    combined = (trace.round_weights[..., None] * trace.weights).sum(dim=2)  # (B, H, N, N)
    torch.testing.assert_close(out, combined @ v, atol=1e-5, rtol=1e-5)
    found = trace.weights.sum(-1) > 0  # (B, H, R, N)
    if combine == "mean":
        expected = found / found.sum(2, keepdim=True)
    else:  # softmax over rounds of each round's logsumexp over the keys it attended
        logits = (q @ k.transpose(-1, -2) / 4.0)[:, :, None].expand_as(trace.weights)
        lse = logits.masked_fill(trace.weights == 0, float("-inf")).logsumexp(-1)
        expected = lse.softmax(dim=2)
    torch.testing.assert_close(trace.round_weights, expected.float(), atol=1e-5, rtol=1e-5)


def test_exclude_self_rule():
    q, k, v = _qkv(b=1, n=12)
    params = LshParams(num_buckets=1, chunk_size=16, exclude_self=True)
    _, trace = lsh_trace(q, k, v, params=params, generator=_gen())
    assert torch.diagonal(trace.weights, dim1=-2, dim2=-1).max() < 1e-6
    lone = torch.zeros(1, 12, dtype=torch.bool)
    lone[0, 0] = True  # a single real token: self is the only key, so it is used
    out = lsh_attention(q, k, v, lone, params=params, generator=_gen())
    torch.testing.assert_close(out[:, :, 0], v[:, :, 0])
    weights = softmax_weights(q, k)
    assert torch.diagonal(weights, dim1=-2, dim2=-1).min() > 0  # default rule keeps self, like softmax
    _, default = lsh_trace(q, k, v, params=params.model_copy(update={"exclude_self": False}), generator=_gen())
    torch.testing.assert_close(default.weights[:, :, 0], weights, atol=1e-5, rtol=1e-5)  # self kept: exact softmax


@pytest.mark.parametrize("num_buckets", [4, None])
@pytest.mark.parametrize("mask_within_chunks", [False, True])
def test_padding_invariance(num_buckets, mask_within_chunks):
    q, k, v = _qkv(b=1, n=29)
    params = LshParams(num_buckets=num_buckets, chunk_size=8, num_hashes=2, mask_within_chunks=mask_within_chunks)
    padded = [torch.cat([t, 1e3 * torch.randn(1, 2, 11, 16)], dim=2) for t in (q, k, v)]
    mask = torch.arange(40)[None] < 29
    out = lsh_attention(*padded, mask, params=params, generator=_gen(2))[:, :, :29]
    torch.testing.assert_close(out, lsh_attention(q, k, v, params=params, generator=_gen(2)), atol=1e-5, rtol=1e-5)


def test_gradients_flow_determinism_and_state_rules():
    q, k, v = (t.requires_grad_(True) for t in _qkv())
    params = LshParams(chunk_size=8, num_hashes=2, mask_within_chunks=True, round_combine="weighted")
    out = lsh_attention(q, k, v, _mask(), params=params, generator=_gen(5))
    out.pow(2).sum().backward()
    assert all(torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0 for t in (q, k, v))
    assert torch.equal(out, lsh_attention(q, k, v, _mask(), params=params, generator=_gen(5)))
    assert not torch.equal(out, lsh_attention(q, k, v, _mask(), params=params, generator=_gen(6)))
    rotations = draw_rotations(16, 2, 6, _gen(5))
    assert torch.isfinite(lsh_attention(q, k, v, params=params, rotations=rotations)).all()
    with pytest.raises(ValueError, match="generator"):
        lsh_attention(q, k, v, params=params)


def test_bfloat16_runs():
    q, k, v = (t.to(torch.bfloat16) for t in _qkv())
    out = lsh_attention(q, k, v, _mask(), params=LshParams(chunk_size=8), generator=_gen())
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
