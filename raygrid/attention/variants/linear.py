"""Linear attention with the elu(x)+1 feature map (non-causal): a standard efficient-attention baseline.

Katharopoulos, Vyas, Pappas, Fleuret 2020, "Transformers are RNNs: Fast Autoregressive Transformers
with Linear Attention", ICML, https://arxiv.org/abs/2006.16236 (eq. 4-7).
Kernel and adapter: raygrid.attention.linear (torch). No state, no hyperparameters to tune.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from raygrid.attention.record import Variant
from raygrid.attention.variants._strict import StrictParams


class LinearParams(StrictParams):
    """Linear attention, φ(x) = elu(x) + 1 (Katharopoulos et al. 2020), non-causal."""

    kind: Literal["linear"] = "linear"
    # Floor of the denominator φ(q)ᵀΣφ(k): φ > 0, but fp32 rounding at large |x| can still reach 0.
    eps: float = Field(1e-6, gt=0)


def flops(params: LinearParams, n: float, hidden: int, heads: int) -> float:
    """Per head Σφ(k)vᵀ 2·d² and φ(q)ᵀ(Σφ(k)vᵀ) 2·d² per token, the normaliser as one more value column:
    4·h·(d + 1) with d = h / heads; independent of N (φ itself is elementwise, not counted)."""
    return 4 * hidden * (hidden / heads + 1)


VARIANT = Variant(
    kind="linear",
    params=LinearParams,
    title="linear elu+1 (Katharopoulos et al. 2020)",
    kernel_module="raygrid.attention.linear",
    kernel="linear_attention",
    adapter="linear_forward",
    flops=flops,
    study=("linear elu+1", {}),
    bench=(("linear elu+1", {}),),
)
