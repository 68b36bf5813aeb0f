"""Reformer-style LSH attention, with a shared (Q = K) or separate query/key.

Kitaev, Kaiser, Levskaya 2020, "Reformer: The Efficient Transformer", ICLR, https://arxiv.org/abs/2001.04451
Angular LSH: Andoni et al. 2015, "Practical and Optimal LSH for Angular Distance", https://arxiv.org/abs/1509.02897

Per hash round r (num_hashes rounds):
1. hash: bucket(x) = argmax([xR_r, -xR_r]) with a random rotation R_r (D, nb/2). The hash depends only on
   the direction of x, so hashing x or x/‖x‖ is the same thing.
2. sort by (bucket, position), padded tokens last: once for qk: shared, queries and keys each on
   their own for qk: separate.
3. cut the sorted order into chunks of chunk_size; query chunk c attends key chunks
   c-look_backward … c+look_forward (missing neighbours at the ends are empty: no wrap-around).
   mask_within_chunks=True keeps only keys of the query's own bucket in that window.
4. exclude_self: a token's own key gets logit -1e5, so it is used only when no other key is allowed.
5. softmax inside the window, unsort back to token order; padded queries output zero.
Rounds are merged by `round_combine` (see LshParams).

qk: shared (Reformer, the study). The keys ARE the queries: the caller ties each layer's W_K to its
W_Q (raygrid.attention.hf_bridge) and the `key` argument is not read. Query i and key i are one vector,
so one hash and one sort serve both, and chunk c's window holds exactly the tokens sorted into chunks
c-look_backward … c+look_forward. With the mask a query always has a same-bucket key in its window
(itself), so exclude_self (the default here) is Reformer's rule. Reformer also L2-normalises the keys;
the study's description does not, and neither do we: with one bucket and a window spanning the
sequence the result is exact softmax(q·qᵀ·scale) over the other tokens.

qk: separate (pretrained checkpoints, whose W_Q and W_K differ). q and k are hashed with the SAME
rotations, so query and key share a bucket with a probability rising with their cosine, but they are
sorted independently: query chunk c meets key chunk c by rank, and the two hold the same bucket range
only approximately. Rule for mask_within_chunks=True: a query whose window holds no key of its own
bucket attends, in that round, every real key of its window (the unmasked rule) instead of being
dropped; LshTrace.fallback marks where that happened. Queries and keys share one padding mask and
both sort padding last, so every real query's window holds a real key: no query-round is ever empty.
Angular similarity ranks keys by cos, not by qᵀk (keys with large norms in other buckets are missed).
Self is an ordinary key by default here (exact softmax is recovered when one window covers the
sequence); exclude_self=True applies Reformer's rule.

Kernels: this module's gather-and-einsum window step is the reference (and the one LshTrace reads);
raygrid.attention.lsh_fused computes the same windows with flex_attention, chosen by `implementation`
(auto: fused on CUDA without attention dropout). Hashing, sorting, unsorting and the round combination
below are shared by both.

Record: raygrid.attention.variants.lsh; the transformers side (hashing per training forward, the Q = K
tie): raygrid.attention.lsh_layer.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from raygrid.attention import lsh_fused
from raygrid.attention.variants.lsh import SELF_LOGIT, LshParams, num_buckets_for


class LshTrace(NamedTuple):
    """Per-round internals, for tests and inspection (dense, O(N²): small inputs only)."""

    weights: torch.Tensor  # (B, H, R, N, N) attention weights of each round, in token order
    round_weights: torch.Tensor  # (B, H, R, N) weight of round r in query i's combined output
    query_buckets: torch.Tensor  # (B, H, R, N)
    key_buckets: torch.Tensor  # (B, H, R, N); the query buckets for qk: shared
    fallback: torch.Tensor  # (B, H, R, N) bool: separate Q/K, no same-bucket key, whole window attended


def draw_rotations(
    head_dim: int, num_hashes: int, num_buckets: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random rotations (D, R, num_buckets // 2), float32, on the generator's device."""
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(head_dim, num_hashes, num_buckets // 2, generator=generator, device=device)


def hash_vectors(x: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Angular LSH buckets; x (B, H, N, D), rotations (D, R, nb/2) -> (B, H, R, N) int64."""
    if rotations.shape[-1] == 0:  # num_buckets = 1: no hashing
        return x.new_zeros((*x.shape[:2], rotations.shape[1], x.shape[2]), dtype=torch.long)
    rotated = torch.einsum("bhnd,drk->bhrnk", x.float(), rotations.to(x.device, torch.float32))
    return torch.cat([rotated, -rotated], dim=-1).argmax(dim=-1)  # (B, H, R, N)


def lsh_attention(
    query: torch.Tensor,
    key: torch.Tensor | None,
    value: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    *,
    params: LshParams,
    rotations: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    scaling: float | None = None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """LSH attention; q, k, v (B, H, N, D) -> (B, H, N, D). Give `rotations` or a seeded `generator`.

    With params.qk == "shared" the keys are the queries and `key` is not read (None is fine). The window
    step runs on the fused or the reference kernel as `params.implementation` and the device decide
    (raygrid.attention.lsh_fused.choose_kernel); both give the same result.
    """
    fused = lsh_fused.choose_kernel(params, query.device, dropout_p) == "fused"
    out, _ = _lsh(query, key, value, key_padding_mask, params, rotations, generator, scaling, dropout_p, False,
                  fused)
    return out


def lsh_trace(
    query: torch.Tensor,
    key: torch.Tensor | None,
    value: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    *,
    params: LshParams,
    rotations: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    scaling: float | None = None,
) -> tuple[torch.Tensor, LshTrace]:
    """lsh_attention on the reference kernel plus its dense per-round weights and buckets (O(N²); tests only)."""
    return _lsh(query, key, value, key_padding_mask, params, rotations, generator, scaling, 0.0, True, False)


def _lsh(query, key, value, key_padding_mask, params, rotations, generator, scaling, dropout_p, trace, fused):
    """Pad to whole chunks, hash, sort, attend per round (fused or reference), unsort, combine; optionally trace."""
    batch, heads, n, head_dim = query.shape
    chunk = params.chunk_size
    n_pad = math.ceil(n / chunk) * chunk
    real = torch.ones(batch, n, dtype=torch.bool, device=query.device)
    if key_padding_mask is not None:
        real = key_padding_mask.to(device=query.device, dtype=torch.bool)
    if rotations is None:
        longest = n if key_padding_mask is None else int(real.sum(-1).max())
        rotations = _fresh_rotations(generator, params, head_dim, longest)
    rotations = rotations.to(query.device, torch.float32)  # once here, not once per hash_vectors call
    nb = max(1, 2 * rotations.shape[-1])
    shared = params.qk == "shared"
    pad = n_pad - n  # internal padding to a whole number of chunks, never attended
    q, v = (F.pad(t, (0, 0, 0, pad)) if pad else t for t in (query, value))  # (B, H, Np, D)
    k = q if shared else (F.pad(key, (0, 0, 0, pad)) if pad else key)
    real = F.pad(real, (0, pad), value=False)  # (B, Np)
    q_buckets = hash_vectors(q, rotations)  # (B, H, R, Np)
    k_buckets = q_buckets if shared else hash_vectors(k, rotations)
    q_order = _sort_order(q_buckets, real, nb)
    k_order = q_order if shared else _sort_order(k_buckets, real, nb)
    scale = head_dim**-0.5 if scaling is None else scaling
    if fused:
        rounds = lsh_fused.attend_sorted(q, k, v, real, q_buckets, k_buckets, q_order, k_order, params, scale)
    else:
        rounds = _attend_sorted(q, k, v, real, q_buckets, k_buckets, q_order, k_order, params, scale, dropout_p,
                                trace)
    inverse = _invert(q_order)  # sorted slot of each token, (B, H, R, Np)
    out_r = _gather(rounds["out"], inverse)  # (B, H, R, Np, D), token order
    lse_r, found_r = (_gather(rounds[name], inverse) for name in ("lse", "found"))  # (B, H, R, Np)
    weights = _round_weights(lse_r, found_r, params.round_combine)  # (B, H, R, Np)
    out = (weights[..., None] * out_r).sum(dim=2)[:, :, :n]  # (B, H, N, D)
    if not trace:
        return out.to(query.dtype), None
    dense = _dense_weights(rounds, q_order, n_pad)[..., :n, :n]  # (B, H, R, N, N)
    fallback = _gather(rounds["fallback"], inverse)[..., :n]
    info = LshTrace(dense, weights[..., :n], q_buckets[..., :n], k_buckets[..., :n], fallback)
    return out.to(query.dtype), info


def _fresh_rotations(generator, params: LshParams, head_dim: int, longest: int) -> torch.Tensor:
    """Rotations drawn from the seeded generator (never the global RNG)."""
    if generator is None:
        raise ValueError("lsh_attention needs `rotations` or a seeded `generator` (no global RNG)")
    return draw_rotations(head_dim, params.num_hashes, num_buckets_for(params, longest), generator)


def _sort_order(buckets: torch.Tensor, real: torch.Tensor, num_buckets: int) -> torch.Tensor:
    """Permutation sorting tokens by (bucket, position); padding gets bucket nb so it sorts last."""
    n_pad = buckets.shape[-1]
    position = torch.arange(n_pad, device=buckets.device)
    bucket = torch.where(real[:, None, None, :], buckets, num_buckets)  # (B, H, R, Np)
    return (bucket * n_pad + position).argsort(dim=-1)  # unique keys: a stable (bucket, position) sort


def _invert(order: torch.Tensor) -> torch.Tensor:
    """Inverse permutation along the last dim."""
    slots = torch.arange(order.shape[-1], device=order.device).expand_as(order)
    return torch.empty_like(order).scatter_(-1, order, slots)


def _gather(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """x (B, H, R or 1, Np[, D]) reordered along tokens by order (B, H, R, Np)."""
    if x.dim() == order.dim():
        return x.expand_as(order).gather(-1, order)
    index = order[..., None].expand(*order.shape, x.shape[-1])
    return x.expand(*order.shape, x.shape[-1]).gather(-2, index)


def _windows(x: torch.Tensor, back: int, forward: int, fill) -> torch.Tensor:
    """Chunked x (B, H, R, C, L, ...) -> each chunk's window (B, H, R, C, (back+1+forward)·L, ...)."""
    num_chunks = x.shape[3]
    pad = [0, 0] * (x.dim() - 4) + [back, forward]  # pad the chunk dim; missing neighbours = fill
    padded = F.pad(x, pad, value=fill)
    shifted = [padded[:, :, :, i : i + num_chunks] for i in range(back + 1 + forward)]
    return torch.cat(shifted, dim=4)


def _attend_sorted(q, k, v, real, q_buckets, k_buckets, q_order, k_order, params, scale, dropout_p, trace):
    """Chunked softmax of every round in sorted order; returns per-slot out / lse / found / fallback."""
    batch, heads, n_pad, head_dim = q.shape
    rounds, chunk = q_order.shape[2], params.chunk_size
    shape = (batch, heads, rounds, n_pad // chunk, chunk)  # (B, H, R, C, L)
    back, fwd = params.look_backward, params.look_forward
    q_s = _gather(q[:, :, None], q_order).view(*shape, head_dim)  # (B, H, R, C, L, D)
    k_s = q_s if params.qk == "shared" else _gather(k[:, :, None], k_order).view(*shape, head_dim)
    k_w = _windows(k_s, back, fwd, 0.0)  # (B, H, R, C, W·L, D)
    v_w = _windows(_gather(v[:, :, None], k_order).view(*shape, head_dim), back, fwd, 0.0)
    real_w = _windows(_gather(real[:, None, None, :], k_order).view(shape), back, fwd, False)  # (..., W·L)
    k_pos = _windows(k_order.view(shape), back, fwd, -1)  # (B, H, R, C, W·L)
    q_pos = q_order.view(shape)  # (B, H, R, C, L)
    q_real = _gather(real[:, None, None, :], q_order).view(shape)  # (B, H, R, C, L)
    logits = torch.einsum("bhrcid,bhrcjd->bhrcij", q_s.float(), k_w.float()) * scale  # (..., L, W·L)
    allowed, fallback = _allowed_keys(params, real_w, q_real, q_buckets, k_buckets, q_order, k_order, shape)
    if params.exclude_self:
        logits = logits.masked_fill(q_pos[..., :, None] == k_pos[..., None, :], SELF_LOGIT)
    found = allowed.any(dim=-1) & q_real  # (B, H, R, C, L): a real query with a key this round
    # Masked keys get -inf; a row with no allowed key (padded queries) gets a dummy all-zero row
    # instead (its output is zeroed below), so softmax never sees an all -inf row (NaN in backward).
    fill = torch.where(found, float("-inf"), 0.0)[..., None]  # (B, H, R, C, L, 1)
    logits = torch.where(allowed, logits, fill)  # one (…, L, W·L) copy
    lse = logits.logsumexp(dim=-1)  # (B, H, R, C, L)
    probs = logits.softmax(dim=-1)
    if dropout_p > 0:
        probs = F.dropout(probs, p=dropout_p)
    out = torch.einsum("bhrcij,bhrcjd->bhrcid", probs, v_w.float()) * found[..., None]  # (B, H, R, C, L, D)
    result = {"out": out.reshape(batch, heads, rounds, n_pad, head_dim), "lse": lse.reshape(q_order.shape),
              "found": found.reshape(q_order.shape), "fallback": fallback.reshape(q_order.shape)}
    if trace:
        result.update(probs=probs * found[..., None], k_pos=k_pos)
    return result


def _allowed_keys(params, real_w, q_real, q_buckets, k_buckets, q_order, k_order, shape):
    """Which window keys each sorted query may attend, (…, L or 1, W·L), and where the fallback rule applied.

    Without the mask: every real key of the window. With it: only keys of the query's own bucket;
    a query with none (separate Q/K only; shared always has itself) attends the whole window.
    """
    allowed = real_w[..., None, :]  # (B, H, R, C, 1, W·L), broadcast over queries
    if not params.mask_within_chunks:
        return allowed, torch.zeros_like(q_real)
    back, fwd = params.look_backward, params.look_forward
    q_b = _gather(q_buckets, q_order).view(shape)  # (B, H, R, C, L)
    k_b = _windows(_gather(k_buckets, k_order).view(shape), back, fwd, -1)  # (B, H, R, C, W·L)
    same = allowed & (q_b[..., :, None] == k_b[..., None, :])  # (B, H, R, C, L, W·L)
    has_same = same.any(dim=-1, keepdim=True)
    return torch.where(has_same, same, allowed), ~has_same[..., 0] & q_real


def _round_weights(lse: torch.Tensor, found: torch.Tensor, combine: str) -> torch.Tensor:
    """Weight of each round per query, (B, H, R, Np); rounds where the query found no key get 0."""
    any_found = found.any(dim=2, keepdim=True)  # (B, H, 1, Np)
    if combine == "mean":
        return found / found.sum(dim=2, keepdim=True).clamp_min(1)
    # "weighted": softmax over rounds of each round's log-normaliser (Reformer, eq. in sec. 3).
    masked = lse.masked_fill(~found, float("-inf")).masked_fill(~any_found, 0.0)
    return masked.softmax(dim=2) * any_found


def _dense_weights(rounds: dict, q_order: torch.Tensor, n_pad: int) -> torch.Tensor:
    """Scatter the windowed probabilities into (B, H, R, Np, Np) token-order matrices."""
    probs, k_pos = rounds["probs"], rounds["k_pos"]  # (B, H, R, C, L, W·L), (B, H, R, C, W·L)
    batch, heads, rounds_n, chunks, length, width = probs.shape
    rows = q_order.view(batch, heads, rounds_n, chunks, length, 1).expand_as(probs)
    cols = k_pos[..., None, :].expand_as(probs).clamp_min(0)  # missing neighbours have prob 0
    flat = (rows * n_pad + cols).reshape(batch, heads, rounds_n, -1)
    dense = probs.new_zeros(batch, heads, rounds_n, n_pad * n_pad)
    dense.scatter_add_(-1, flat, probs.reshape(batch, heads, rounds_n, -1))
    return dense.view(batch, heads, rounds_n, n_pad, n_pad)
