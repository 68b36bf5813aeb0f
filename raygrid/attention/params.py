"""Typed parameters of each attention variant: the values of a grid's `attention` axis.

The grid config (raygrid.spec.config) imports these models; the kernels read them. Every model rejects
unknown keys, so a typo in a grid file fails before any trial starts.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator


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


class LshParams(_Strict):
    """Reformer-style LSH attention (Kitaev et al. 2020)."""

    kind: Literal["lsh"] = "lsh"
    # shared = Reformer's and the study's Q = K: each layer's key projection is tied to its query
    # projection, the shared vector is hashed and sorted once per round (from-scratch models, or
    # weights from an earlier `shared` stage: a pretrained checkpoint's key weights would be thrown
    # away). separate = the checkpoint's own W_Q and W_K, hashed and sorted each on its own (for
    # pretrained encoders; see raygrid.attention.lsh for the rule when a window has no same-bucket key).
    qk: Literal["shared", "separate"] = "separate"
    num_hashes: int = Field(2, gt=0)
    chunk_size: int = Field(64, gt=0)
    num_buckets: int | None = Field(
        None,
        ge=1,
        description="None = longest real length / chunk_size, rounded up to an even number >= 2; "
        "1 = no hashing (every token in one bucket: a sliding window over the sequence, for ablations/tests)",
    )
    # true = inside the chunk window a query attends only keys of its own bucket (Reformer,
    # lucidrains attend_across_buckets=False); false = every key of the window (the study's "no mask").
    mask_within_chunks: bool = False
    # How the num_hashes rounds are merged. "mean" = 1/R Σ_r o_r (the study's slides; default so the
    # grids reproduce the study); "weighted" = Σ_r softmax_r(lse_r) o_r (Reformer: each round weighted
    # by its softmax normaliser, i.e. as if all rounds' keys were one softmax).
    round_combine: Literal["mean", "weighted"] = "mean"
    # Neighbour chunks in the sorted order that each query chunk also sees (no wrap-around).
    # Reformer: the previous chunk only (1, 0).
    look_backward: int = Field(1, ge=0)
    look_forward: int = Field(0, ge=0)
    # With Q = K a token's own key always wins, so Reformer masks it unless nothing else is
    # available. Default (when not given): masked for qk: shared, an ordinary key for separate Q/K
    # (as in softmax). The resolved value is what the cell records.
    exclude_self: bool = False

    @model_validator(mode="before")
    @classmethod
    def _self_rule_of_qk(cls, data: Any) -> Any:
        if isinstance(data, dict) and "exclude_self" not in data:
            data = {**data, "exclude_self": data.get("qk", "separate") == "shared"}
        return data

    @field_validator("num_buckets")
    @classmethod
    def _even_buckets(cls, num_buckets: int | None) -> int | None:
        # Angular hashing argmax over [xR, -xR] yields an even number of buckets.
        if num_buckets is not None and num_buckets > 1 and num_buckets % 2:
            raise ValueError("must be 1 or even")
        return num_buckets


AttentionParams = Annotated[Union[SoftmaxParams, FavorParams, LshParams], Field(discriminator="kind")]
