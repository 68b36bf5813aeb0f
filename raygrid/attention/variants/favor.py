"""Performer FAVOR+ (non-causal): softmax attention estimated with positive or hyperbolic random features.

Choromanski et al. 2021, "Rethinking Attention with Performers", ICLR, https://arxiv.org/abs/2009.14794
Kernel, adapter and per-layer state (the projection buffer, its redraws): raygrid.attention.favor (torch).
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from raygrid.attention.record import Variant
from raygrid.attention.variants._strict import StrictParams


class FavorParams(StrictParams):
    """Performer FAVOR+ (Choromanski et al. 2021), non-causal."""

    kind: Literal["favor"] = "favor"
    feature_map: Literal["positive", "hyperbolic"] = "hyperbolic"
    nb_features: int = Field(256, gt=0, description="feature columns (2m for hyperbolic)")
    orthogonal: bool = True
    redraw_interval: int = Field(0, ge=0, description="optimizer steps between redraws; 0 = fixed")
    # Added to every feature after the max-subtraction: keeps the denominator > 0 when all
    # features of a row underflow (fp16/bf16, large norms). Biases the estimate by ~eps.
    stabilizer: float = Field(1e-6, gt=0)

    # A field validator (not a model validator), so errors name the key: `attention.nb_features: …`.
    # feature_map is declared above nb_features, so it is already in info.data.
    @field_validator("nb_features")
    @classmethod
    def _even_for_hyperbolic(cls, nb_features: int, info: ValidationInfo) -> int:
        # φ* stacks [exp(ωᵀx), exp(-ωᵀx)], so its column count is 2m.
        if info.data.get("feature_map") == "hyperbolic" and nb_features % 2:
            raise ValueError("hyperbolic features need an even number of columns (2m)")  # pydantic adds the value
        return nb_features

    @property
    def num_omegas(self) -> int:
        """Number of random directions ω (rows of the projection): m."""
        return self.nb_features // 2 if self.feature_map == "hyperbolic" else self.nb_features


def flops(params: FavorParams, n: float, hidden: int, heads: int) -> float:
    """φ(q), φ(k): 2·2·m·h; K'ᵀV and Q'(K'ᵀV): 2·2·M·h (M columns, m directions); independent of N."""
    return 4 * hidden * (params.nb_features + params.num_omegas)


VARIANT = Variant(
    kind="favor",
    params=FavorParams,
    title="FAVOR+ (Performer, Choromanski et al. 2021)",
    kernel_module="raygrid.attention.favor",
    kernel="favor_attention",
    adapter="favor_forward",
    attach="attach_projection",
    redraw="redraw_projection",
    redraw_every=lambda params: params.redraw_interval,
    standalone="standalone",
    flops=flops,
    study=("favor φ* M=256", {"feature_map": "hyperbolic", "nb_features": 256}),
    bench=tuple((f"favor {fm} M={nb}", {"feature_map": fm, "nb_features": nb})
                for fm in ("positive", "hyperbolic") for nb in (128, 256)),
    state_buffers=("favor_projection",),
)
