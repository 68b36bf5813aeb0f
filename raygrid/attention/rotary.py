"""Rotary position embeddings (RoPE) for q and k, pure torch.

Su et al. 2021, "RoFormer: Enhanced Transformer with Rotary Position Embedding", https://arxiv.org/abs/2104.09864

Position m rotates the 2-D pair (x_i, x_{i+D/2}) of a head vector by the angle m·θ_i, θ_i = base^(-2i/D),
i = 0 … D/2-1. Since rotations compose, ⟨R_m q, R_n k⟩ = ⟨q, R_{n-m} k⟩: scores depend on n - m only,
and ‖R_m x‖ = ‖x‖.

Formulation: the "half-split" pairing (`rotate_half`, as in GPT-NeoX, LLaMA and HF's `apply_rotary_pos_emb`),
not RoFormer's interleaved pairs (x_{2i}, x_{2i+1}). Both give the same relative-position property (they
differ by a fixed permutation of the head dims); we take half-split because it is what HF's models and
kernels use, so our layers match `LlamaRotaryEmbedding` numerically (tested), and it needs no strided
gathers. A model trained with one pairing is not interchangeable with the other.

Positions are 0 … N-1 along dim -2: raygrid's batches are right-padded, so every sequence's real tokens
start at 0 and padding never shifts them. cos/sin are computed in float32 (positions up to 2^24 are exact)
and cast to the input dtype, like HF.
"""
from __future__ import annotations

import functools

import torch


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dim."""
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def rotary_tables(
    num_positions: int, head_dim: int, base: float, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of m·θ_i for m = 0 … N-1, each (N, D) in `dtype` (halves repeated, for rotate_half)."""
    if head_dim % 2:
        raise ValueError(f"rotary positions need an even head dim, got {head_dim}")
    if base <= 0:
        raise ValueError(f"rotary base must be positive, got {base}")
    return _cached_tables(int(num_positions), int(head_dim), float(base), torch.device(device), dtype)


@functools.lru_cache(maxsize=32)  # bounded: a few sequence lengths × dtypes × devices per process
def _cached_tables(n: int, d: int, base: float, device: torch.device, dtype: torch.dtype):
    # Built outside inference mode: an inference tensor cached during evaluation could not be saved
    # for backward in a later training step.
    with torch.inference_mode(False), torch.no_grad():
        inv_freq = base ** (-torch.arange(0, d, 2, device=device, dtype=torch.float32) / d)  # (D/2,)
        angles = torch.outer(torch.arange(n, device=device, dtype=torch.float32), inv_freq)  # (N, D/2)
        angles = torch.cat([angles, angles], dim=-1)  # (N, D): pair i and i + D/2 share θ_i
        return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate(x: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """RoPE on x (..., N, D) with positions 0 … N-1 along dim -2; same shape and dtype."""
    cos, sin = rotary_tables(x.shape[-2], x.shape[-1], base, x.device, x.dtype)  # (N, D) each
    return x * cos + rotate_half(x) * sin


def apply_rotary(
    query: torch.Tensor, key: torch.Tensor, base: float = 10000.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE on query and key (B, H, N, D), both with positions 0 … N-1 (encoders: no cache offset)."""
    return rotate(query, base), rotate(key, base)
