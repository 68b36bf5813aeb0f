"""LSH qk: shared (the study's Reformer rules) and separate Q/K's rule for windows without a same-bucket key.

Every expectation is computed here from first principles (a stable sort by bucket, dense softmax),
not read back from the kernel's own helpers.
"""
from __future__ import annotations

import pytest
import torch

from raygrid.attention import LshParams
from raygrid.attention.lsh import lsh_attention
from raygrid.attention.lsh import lsh_trace

STUDY = dict(qk="shared", look_backward=1, look_forward=1, round_combine="mean")  # the study's LSH rules


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _clustered(n=32, d=16, clusters=4, seed=0):
    """Vectors near a few directions (buckets well populated); values random. (1, 1, N, D) each."""
    gen = _gen(seed)
    centres = torch.randn(clusters, d, generator=gen) * 3
    x = centres[torch.arange(n) % clusters] + 0.5 * torch.randn(n, d, generator=gen)
    return x[None, None], torch.randn(1, 1, n, d, generator=gen)


def _sorted_chunk(buckets: torch.Tensor, chunk: int) -> torch.Tensor:
    """Chunk index of every token in the stable (bucket, position) order: (..., N) -> (..., N)."""
    order = torch.sort(buckets, dim=-1, stable=True).indices
    slot = torch.empty_like(order).scatter_(-1, order, torch.arange(buckets.shape[-1]).expand_as(order))
    return slot // chunk


def test_study_defaults_resolve_self_rule_from_qk():
    assert LshParams(qk="shared").exclude_self is True  # Reformer's rule for Q = K
    assert LshParams().exclude_self is False and LshParams().qk == "separate"
    assert LshParams(qk="shared", exclude_self=False).exclude_self is False  # an explicit value wins


def test_shared_queries_attend_only_their_sorted_window():
    x, v = _clustered()
    params = LshParams(num_buckets=8, chunk_size=4, num_hashes=2, **STUDY)
    _, trace = lsh_trace(x, None, v, params=params, generator=_gen(1))
    assert torch.equal(trace.query_buckets, trace.key_buckets)  # one hash per round serves both
    chunk = _sorted_chunk(trace.query_buckets, 4)  # (B, H, R, N)
    in_window = (chunk[..., :, None] - chunk[..., None, :]).abs() <= 1  # previous, own and next chunk
    not_self = ~torch.eye(32, dtype=torch.bool)
    expected = in_window & not_self
    assert trace.weights[~expected].abs().max() == 0
    assert (trace.weights[expected] > 0).all()  # no mask: every other token of the window gets weight
    assert (expected.sum(-1) >= 4 * 2 - 1).all()  # at least own + one neighbour chunk, minus self


def test_shared_mask_on_keeps_only_same_bucket_keys_renormalised():
    x, v = _clustered(seed=3)
    off = LshParams(num_buckets=4, chunk_size=8, num_hashes=2, mask_within_chunks=False, **STUDY)
    on = off.model_copy(update={"mask_within_chunks": True})
    _, trace_off = lsh_trace(x, None, v, params=off, generator=_gen(2))
    _, trace_on = lsh_trace(x, None, v, params=on, generator=_gen(2))
    same = trace_off.query_buckets[..., :, None] == trace_off.key_buckets[..., None, :]  # (B, H, R, N, N)
    kept = trace_off.weights * same
    total = kept.sum(-1, keepdim=True)
    alone = total[..., 0] == 0  # only itself in its bucket within the window: self is used (Reformer)
    expected = torch.where(alone[..., None], torch.eye(32).expand_as(kept), kept / total.clamp_min(1e-30))
    torch.testing.assert_close(trace_on.weights, expected, atol=1e-6, rtol=1e-5)
    assert not trace_on.fallback.any()  # shared Q/K never needs the separate-mode fallback
    assert (trace_off.weights * ~same).sum() > 0  # the two settings do differ on these inputs


@pytest.mark.parametrize("mask_within_chunks", [False, True])
@pytest.mark.parametrize("num_hashes", [1, 3])
def test_one_bucket_full_window_is_exact_shared_qk_with_self_masked(mask_within_chunks, num_hashes):
    gen = _gen(4)
    x, v = torch.randn(2, 2, 20, 8, generator=gen), torch.randn(2, 2, 20, 8, generator=gen)
    real = torch.ones(2, 20, dtype=torch.bool)
    real[1, 13:] = False
    params = LshParams(num_buckets=1, chunk_size=32, num_hashes=num_hashes, mask_within_chunks=mask_within_chunks,
                       **STUDY)
    garbage_key = 1e3 * torch.randn(2, 2, 20, 8, generator=gen)
    out = lsh_attention(x, garbage_key, v, real, params=params, generator=_gen(5))
    logits = (x @ x.transpose(-1, -2)) * 8**-0.5  # exact shared-QK attention, own key and padding masked
    allowed = real[:, None, None, :] & ~torch.eye(20, dtype=torch.bool)
    expected = logits.masked_fill(~allowed, float("-inf")).softmax(-1) @ v * real[:, None, :, None]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)  # `key` is not read in shared mode
    assert out[1, :, 13:].abs().max() == 0  # padded queries output zero


def _opposed(n=16, d=8, seed=0):
    """Keys point away from the queries: under the same rotations no query shares a bucket with any key."""
    gen = _gen(seed)
    q = torch.randn(d, generator=gen) * 4 + 0.1 * torch.randn(1, 1, n, d, generator=gen)
    return q, -q.flip(2), torch.randn(1, 1, n, d, generator=gen)


def test_separate_window_without_same_bucket_key_attends_whole_window():
    q, k, v = _opposed()
    masked = LshParams(num_buckets=4, chunk_size=4, num_hashes=2, mask_within_chunks=True)
    out_on, trace_on = lsh_trace(q, k, v, params=masked, generator=_gen(6))
    out_off, trace_off = lsh_trace(q, k, v, params=masked.model_copy(update={"mask_within_chunks": False}),
                                   generator=_gen(6))
    assert (trace_on.query_buckets[..., :, None] != trace_on.key_buckets[..., None, :]).all()
    assert trace_on.fallback.all()  # every query-round fell back ...
    torch.testing.assert_close(out_on, out_off)  # ... to the unmasked window, never to nothing
    torch.testing.assert_close(trace_on.round_weights, torch.full_like(trace_on.round_weights, 0.5))


def test_separate_fallback_rows_equal_unmasked_rows_others_stay_in_bucket():
    gen = _gen(7)
    q, k, v = (torch.randn(1, 2, 48, 8, generator=gen) for _ in range(3))
    on = LshParams(num_buckets=8, chunk_size=8, num_hashes=3, mask_within_chunks=True)
    _, trace_on = lsh_trace(q, k, v, params=on, generator=_gen(8))
    _, trace_off = lsh_trace(q, k, v, params=on.model_copy(update={"mask_within_chunks": False}), generator=_gen(8))
    fallback = trace_on.fallback  # (B, H, R, N)
    assert fallback.any() and not fallback.all()  # random vectors: some windows lack a same-bucket key
    torch.testing.assert_close(trace_on.weights[fallback], trace_off.weights[fallback])
    same = trace_on.query_buckets[..., :, None] == trace_on.key_buckets[..., None, :]
    assert (trace_on.weights * ~same)[~fallback].abs().max() == 0
    found = trace_on.weights.sum(-1)  # every query-round attends something: none is dropped
    torch.testing.assert_close(found, torch.ones_like(found))
