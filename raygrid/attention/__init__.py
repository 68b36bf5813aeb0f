"""Attention kernels: pure functions q, k, v (B, H, N, D) + key_padding_mask (B, N) -> (B, H, N, D).

`KERNELS` maps each `kind` of the attention params to its kernel. HF integration lives in
`raygrid.attention.hf_bridge` (imported on demand, so importing this package never imports transformers).
"""
from __future__ import annotations

from typing import Callable

from raygrid.attention.favor import draw_projection, favor_attention
from raygrid.attention.lsh import draw_rotations, lsh_attention
from raygrid.attention.params import AttentionParams, FavorParams, LshParams, SoftmaxParams
from raygrid.attention.softmax import softmax_attention

KERNELS: dict[str, Callable] = {
    "softmax": softmax_attention,
    "favor": favor_attention,
    "lsh": lsh_attention,
}


def get(name: str) -> Callable:
    """The kernel registered under `name`; KeyError lists the known names."""
    try:
        return KERNELS[name]
    except KeyError:
        raise KeyError(f"unknown attention kind {name!r}; known: {sorted(KERNELS)}") from None


__all__ = [
    "KERNELS",
    "AttentionParams",
    "FavorParams",
    "LshParams",
    "SoftmaxParams",
    "draw_projection",
    "draw_rotations",
    "favor_attention",
    "get",
    "lsh_attention",
    "softmax_attention",
]
