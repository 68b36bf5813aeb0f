"""Typed parameters of each attention variant: the values of a grid's `attention` axis.

The grid config (raygrid.config) imports these models; the kernels read them. Every model rejects
unknown keys, so a typo in a grid file fails before any trial starts.
"""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SoftmaxParams(_Strict):
    """Exact softmax attention (the reference)."""

    kind: Literal["softmax"] = "softmax"
    # sdpa = PyTorch scaled_dot_product_attention (flash/mem-efficient backends on GPU);
    # eager = HF's plain matmul implementation, for debugging and attention maps.
    implementation: Literal["sdpa", "eager"] = "sdpa"


class FavorParams(_Strict):
    """Performer FAVOR+ (Choromanski et al. 2021), non-causal."""

    kind: Literal["favor"] = "favor"
    feature_map: Literal["positive", "hyperbolic"] = "hyperbolic"
    nb_features: int = Field(256, gt=0, description="feature columns (2m for hyperbolic)")
    orthogonal: bool = True
    redraw_interval: int = Field(0, ge=0, description="optimizer steps between redraws; 0 = fixed")
    stabilizer: float = Field(1e-6, gt=0)


class LshParams(_Strict):
    """Reformer-style LSH attention (Kitaev et al. 2020)."""

    kind: Literal["lsh"] = "lsh"
    num_hashes: int = Field(2, gt=0)
    chunk_size: int = Field(64, gt=0)
    num_buckets: int | None = Field(None, gt=1, description="None = tokens / chunk_size")
    mask_within_chunks: bool = False


AttentionParams = Annotated[Union[SoftmaxParams, FavorParams, LshParams], Field(discriminator="kind")]
