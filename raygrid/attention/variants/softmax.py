"""Exact softmax attention: the reference every other variant is measured against.

Vaswani et al. 2017, "Attention Is All You Need", https://arxiv.org/abs/1706.03762
Kernel and adapter: raygrid.attention.softmax (torch). Without rotary positions the model runs
transformers' own `sdpa` or `eager` implementation; with RoPE raygrid's adapter.
"""
from __future__ import annotations

from typing import Literal

from raygrid.attention.record import Variant
from raygrid.attention.variants._strict import StrictParams


class SoftmaxParams(StrictParams):
    """Exact softmax attention (the reference)."""

    kind: Literal["softmax"] = "softmax"
    # sdpa = PyTorch scaled_dot_product_attention (flash/mem-efficient backends on GPU);
    # eager = HF's plain matmul implementation, for debugging and attention maps.
    implementation: Literal["sdpa", "eager"] = "sdpa"


def flops(params: SoftmaxParams, n: float, hidden: int, heads: int) -> float:
    """QKᵀ 2·N·h + AV 2·N·h per token."""
    return 4 * hidden * n


VARIANT = Variant(
    kind="softmax",
    params=SoftmaxParams,
    title="softmax (Vaswani et al. 2017)",
    kernel_module="raygrid.attention.softmax",
    kernel="softmax_attention",
    adapter="softmax_forward",
    flops=flops,
    study=("softmax (SDPA)", {}),
    bench=(("softmax (SDPA)", {}),),
    reference=True,
    builtin_implementation=lambda params: params.implementation,
)
