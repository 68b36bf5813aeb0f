"""LSH attention's window step on a fused kernel: torch's flex_attention over the sorted sequence.

After hashing and the stable (bucket, position) sort, the study's LSH is block-sparse attention: sorted
query slot s, in chunk c = s // L, may attend the sorted key slots of chunks c-look_backward …
c+look_forward. raygrid.attention.lsh (`_attend_sorted`) computes that with gathers and einsums and stays
the reference; this module expresses it as one `flex_attention` call per layer, the R hash rounds being
R extra heads, with a `BlockMask` listing only the (128-slot) key blocks a query block can reach and a `mask_mod`
/ `score_mod` carrying the reference's rules exactly:

- window: the kv chunk is within [c - look_backward, c + look_forward] (no wrap-around);
- padding: both sorts put padded tokens last, so sorted slot s holds a real token iff s < the row's real
  count: queries and keys beyond it are masked. A padded query's row is then empty and flex outputs 0, as
  the reference zeroes it; every real query keeps at least one key (the reference's `found`);
- exclude_self: the own key's logit becomes SELF_LOGIT (-1e5, the reference's value) in `score_mod`, so
  it is used only when nothing else is allowed and enters the log-normaliser exactly as there;
- mask_within_chunks: keys of other buckets are masked; for separate Q/K a query whose window holds no
  real key of its bucket attends the whole window (the reference's fallback), found by binary search in
  the sorted key buckets, so no (N, window) tensor is built;
- rounds: flex returns each row's log-sum-exp, which the reference's round combination takes as is.

Where it runs (`choose_kernel`, field `attention.implementation`): `auto` takes the fused kernel on CUDA
with Triton (compiled flex_attention: a fused, block-sparse kernel, forward and backward) when there is
no attention-probability dropout (flex has none; the study's is 0.0), and the reference otherwise. On
CPU the reference is faster and lighter: flex's CPU paths are an eager one that stores the full N×N
scores and has no backward, and a compiled one for inference only, without the log-sum-exp
(BENCHMARKS.md, "LSH on a fused kernel"). `implementation: fused` forces this module anywhere (CPU: flex's
eager path, or `dense_flex` when gradients are needed), `reference` forces the reference.
"""
from __future__ import annotations

import functools
import math
import warnings

import torch

from raygrid.attention.variants.lsh import SELF_LOGIT, LshParams

# BlockMask tile (query and key blocks). Not the chunk size: the Triton kernels' tiles must divide it, and
# torch's default backward tiles for bf16 on H100/H200 are 128 keys wide (64 would leave no valid
# kernel). So chunks of 64 are computed two at a time; the mask_mod still keeps each query's window exact.
BLOCK = 128


def fused_problem(device: torch.device, dropout_p: float) -> str | None:
    """Why the fused kernel does not run by default here (None: it does)."""
    if dropout_p > 0:
        return f"flex_attention has no attention-probability dropout (dropout {dropout_p})"
    if _flex_module() is None:
        return f"torch {torch.__version__} has no torch.nn.attention.flex_attention"
    if device.type != "cuda":
        return f"flex_attention trains only on CUDA ({device.type}: eager path with N×N scores, no backward)"
    if not _has_triton():
        return "compiled flex_attention needs Triton, which is not installed"
    return None


def choose_kernel(params: LshParams, device: torch.device, dropout_p: float = 0.0) -> str:
    """'fused' or 'reference' for `params` on `device` (see the module docstring); forced choices are kept."""
    if params.implementation == "reference":
        return "reference"
    problem = fused_problem(torch.device(device), dropout_p)
    if params.implementation == "fused":
        if problem and (dropout_p > 0 or _flex_module() is None):
            raise ValueError(f"attention.implementation: fused cannot run: {problem}")
        return "fused"
    return "reference" if problem else "fused"


def attend_sorted(q, k, v, real, q_buckets, k_buckets, q_order, k_order, params: LshParams, scale: float) -> dict:
    """Every round's window attention in sorted order, as raygrid.attention.lsh._attend_sorted returns it.

    q, k, v (B, H, Np, D) padded to whole chunks; real (B, Np); buckets and orders (B, H, R, Np).
    Returns out (B, H, R, Np, D), lse and found (B, H, R, Np), by sorted slot.
    """
    batch, heads, n_pad, head_dim = q.shape
    rounds = q_order.shape[2]
    flat = (batch, heads * rounds, n_pad)  # rounds as extra heads of one flex call
    shared = params.qk == "shared"
    q_s = _sorted(q, q_order).view(*flat, head_dim)  # (B, H·R, Np, D)
    # Shared Q = K: the same values, but not the same tensor: with q and k aliased, torch 2.13's dynamo
    # failed while recompiling flex_attention for new settings (IndexError in its aliasing-guard report).
    k_s = q_s.clone() if shared else _sorted(k, k_order).view(*flat, head_dim)
    v_s = _sorted(v, k_order).view(*flat, head_dim)
    lengths = real.sum(dim=-1)  # (B,): real tokens, the first slots of every sorted order
    mask_mod = window_mask_mod(params, n_pad, lengths, q_buckets, k_buckets, q_order, k_order, real)
    score_mod = self_score_mod(params, q_order.reshape(flat), k_order.reshape(flat))
    block_mask = window_block_mask(n_pad, params.chunk_size, params.look_backward, params.look_forward, BLOCK,
                                   mask_mod, q.device)
    out, lse = run_flex(q_s, k_s, v_s, score_mod, block_mask, scale)
    found = torch.arange(n_pad, device=q.device) < lengths[:, None]  # (B, Np)
    return {"out": out.view(batch, heads, rounds, n_pad, head_dim), "lse": lse.view(batch, heads, rounds, n_pad),
            "found": found[:, None, None, :].expand(batch, heads, rounds, n_pad)}


def window_mask_mod(params: LshParams, n_pad, lengths, q_buckets, k_buckets, q_order, k_order, real):
    """flex mask_mod(b, h, q_idx, kv_idx) over sorted slots; h = head·R + round (see the module docstring)."""
    chunk, back, fwd = params.chunk_size, params.look_backward, params.look_forward

    def window(b, h, q_idx, kv_idx):
        q_chunk, kv_chunk = q_idx // chunk, kv_idx // chunk
        near = (kv_chunk >= q_chunk - back) & (kv_chunk <= q_chunk + fwd)
        return near & (q_idx < lengths[b]) & (kv_idx < lengths[b])

    if not params.mask_within_chunks:
        return window
    flat = (q_order.shape[0], q_order.shape[1] * q_order.shape[2], n_pad)
    q_b = _sorted_labels(q_buckets, q_order).reshape(flat)  # (B, H·R, Np): bucket of each sorted query
    k_b = _sorted_labels(k_buckets, k_order).reshape(flat)
    if params.qk == "shared":  # a real query's own key is in its window and bucket: never a fallback

        def own_bucket(b, h, q_idx, kv_idx):
            return window(b, h, q_idx, kv_idx) & (q_b[b, h, q_idx] == k_b[b, h, kv_idx])

        return own_bucket
    padded_last = torch.where(real[:, None, None, :], k_buckets, torch.iinfo(k_buckets.dtype).max)
    whole = ~_has_same_bucket(q_b, _sorted_labels(padded_last, k_order).reshape(flat), chunk, back, fwd)

    def own_bucket_or_window(b, h, q_idx, kv_idx):
        same = (q_b[b, h, q_idx] == k_b[b, h, kv_idx]) | whole[b, h, q_idx]
        return window(b, h, q_idx, kv_idx) & same

    return own_bucket_or_window


def self_score_mod(params: LshParams, q_tokens: torch.Tensor, k_tokens: torch.Tensor):
    """flex score_mod: the own key's logit -> SELF_LOGIT under exclude_self (else None: scores unchanged)."""
    if not params.exclude_self:
        return None
    if params.qk == "shared":  # one order for both: the own key sits in the query's own slot

        def shared_self(score, b, h, q_idx, kv_idx):
            return torch.where(q_idx == kv_idx, SELF_LOGIT, score)

        return shared_self

    def separate_self(score, b, h, q_idx, kv_idx):
        return torch.where(q_tokens[b, h, q_idx] == k_tokens[b, h, kv_idx], SELF_LOGIT, score)

    return separate_self


def _has_same_bucket(q_b, k_sorted, chunk: int, back: int, fwd: int) -> torch.Tensor:
    """(B, H·R, Np) bool: the query's window holds a real key of its bucket.

    k_sorted: sorted key buckets with padded keys set above every bucket, so non-decreasing; the keys of
    bucket b are then the slots [first, after) and a window [lo, hi) meets them iff max(first, lo) < min(after, hi).
    """
    n_pad = k_sorted.shape[-1]
    first = torch.searchsorted(k_sorted, q_b.contiguous(), side="left")
    after = torch.searchsorted(k_sorted, q_b.contiguous(), side="right")
    chunk_of = torch.arange(n_pad, device=q_b.device) // chunk  # (Np,)
    lo = (chunk_of - back).clamp_min(0) * chunk
    hi = ((chunk_of + fwd + 1) * chunk).clamp_max(n_pad)
    return torch.maximum(first, lo) < torch.minimum(after, hi)


def window_block_mask(n_pad: int, chunk: int, back: int, fwd: int, block: int, mask_mod, device):
    """BlockMask of the key blocks each query block can reach (exact when block = chunk, else a superset)."""
    from torch.nn.attention.flex_attention import BlockMask

    blocks = math.ceil(n_pad / block)
    first = torch.arange(blocks, device=device) * block  # first slot of each query block
    last = (first + block).clamp_max(n_pad) - 1
    lo = (first // chunk - back).clamp_min(0) * chunk // block  # first key block of the window
    hi = (((last // chunk + fwd + 1) * chunk).clamp_max(n_pad) - 1) // block  # last key block
    columns = torch.arange(blocks, device=device)
    inside = (columns >= lo[:, None]) & (columns <= hi[:, None])  # (QB, KB)
    # kv_indices: the reachable blocks first, in order, then the others (ignored beyond kv_num_blocks).
    indices = torch.where(inside, columns, columns + blocks).argsort(dim=-1)
    count = inside.sum(dim=-1)
    return BlockMask.from_kv_blocks(count[None, None].to(torch.int32), indices[None, None].to(torch.int32),
                                    BLOCK_SIZE=block, mask_mod=mask_mod, seq_lengths=(n_pad, n_pad))


def run_flex(q, k, v, score_mod, block_mask, scale: float):
    """(out, lse) of flex_attention: compiled on CUDA; on CPU flex's eager path, or `dense_flex` under autograd."""
    if q.device.type == "cuda":
        # q, k, v already hold autocast's dtype; autocast off keeps it from re-casting inside the kernel.
        with torch.autocast(device_type="cuda", enabled=False):
            return _call_flex(_compiled_flex(), q, k.to(q.dtype), v.to(q.dtype), score_mod, block_mask, scale)
    if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        return dense_flex(q, k, v, score_mod, block_mask.mask_mod, scale)  # flex has no CPU backward
    with warnings.catch_warnings():  # its advice (torch.compile) does not apply: no backward, no LSE on CPU
        warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
        return _call_flex(_flex_module().flex_attention, q, k, v, score_mod, block_mask, scale)


def dense_flex(q, k, v, score_mod, mask_mod, scale: float):
    """flex_attention's result computed densely with autograd: (B, H, N, N) scores, for CPU checks only.

    The mods are evaluated on broadcast index tensors, as flex's eager path does; an empty row gives
    output 0 and log-sum-exp -inf (flex's convention) without NaN gradients.
    """
    batch, heads, n, _ = q.shape
    index = [torch.arange(size, device=q.device) for size in (batch, heads, n, n)]
    b, h, q_idx, kv_idx = (x.view([-1 if i == axis else 1 for i in range(4)]) for axis, x in enumerate(index))
    scores = torch.einsum("bhqd,bhkd->bhqk", q.float(), k.float()) * scale  # (B, H, N, N)
    if score_mod is not None:
        scores = score_mod(scores, b, h, q_idx, kv_idx)
    allowed = mask_mod(b, h, q_idx, kv_idx).expand_as(scores)
    rows = allowed.any(dim=-1)  # (B, H, N)
    scores = scores.masked_fill(~allowed, float("-inf")).masked_fill(~rows[..., None], 0.0)
    lse = scores.logsumexp(dim=-1)
    probs = (scores - lse[..., None]).exp() * allowed
    out = torch.einsum("bhqk,bhkd->bhqd", probs, v.float()) * rows[..., None]
    return out.to(q.dtype), lse.masked_fill(~rows, float("-inf"))


def _call_flex(flex, q, k, v, score_mod, block_mask, scale):
    """flex(...) returning (out, lse): `return_aux` where torch has it (>= 2.9), else `return_lse`."""
    aux_request = getattr(_flex_module(), "AuxRequest", None)
    options = dict(score_mod=score_mod, block_mask=block_mask, scale=scale)
    if aux_request is None:
        return flex(q, k, v, return_lse=True, **options)
    out, aux = flex(q, k, v, return_aux=aux_request(lse=True), **options)
    return out, aux.lse


def _sorted(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Vectors x (B, H, Np, D) in each round's sorted order (B, H, R, Np) -> (B, H, R, Np, D)."""
    index = order[..., None].expand(*order.shape, x.shape[-1])
    return x[:, :, None].expand(*order.shape, x.shape[-1]).gather(-2, index)


def _sorted_labels(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Per-round labels x (B, H, R, Np) in each round's sorted order (B, H, R, Np)."""
    return x.gather(-1, order)


def allow_flex_recompiles(limit: int = 64) -> None:
    """Raise dynamo's recompile limit (default 8) for processes that compile flex_attention for many
    settings (benchmarks, the GPU check): past the limit it would quietly run flex's unfused path."""
    import torch._dynamo

    for name in ("recompile_limit", "cache_size_limit"):  # the newer name, and the older one where it differs
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(limit, getattr(torch._dynamo.config, name)))


@functools.cache
def _flex_module():
    try:
        from torch.nn.attention import flex_attention
    except ImportError:
        return None
    return flex_attention


@functools.cache
def _has_triton() -> bool:
    from torch.utils._triton import has_triton

    return has_triton()


@functools.cache
def _compiled_flex():
    # One compiled function per process; new sequence lengths recompile once, then dynamo marks them
    # dynamic (its automatic dynamic shapes), so length-grouped batches do not recompile forever.
    return torch.compile(_flex_module().flex_attention)
