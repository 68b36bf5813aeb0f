"""Reformer-style LSH attention, with shared (Q = K) or separate queries and keys.

Kitaev, Kaiser, Levskaya 2020, "Reformer: The Efficient Transformer", ICLR, https://arxiv.org/abs/2001.04451
Kernel, adapter and per-layer state (hash seeds, the Q = K tie, hashing per training forward):
raygrid.attention.lsh (kernel) and raygrid.attention.lsh_layer (transformers side), both torch.
Its rules for a cell live here too: a chunk no longer than data.max_len (`length_check`), Q = K only on
weights that never had separate keys (`cell_check`), num_buckets: max_len fixed per cell (`for_max_len`).
"""
from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from raygrid.attention.record import Ablation, Variant
from raygrid.attention.variants._strict import StrictParams

SELF_LOGIT = -1e5  # Reformer's logit for a token's own key: finite, so used only when no other key is allowed
MAX_LEN = "max_len"  # num_buckets from the cell's data.max_len (the study pads every sequence to it)


class LshParams(StrictParams):
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
    num_buckets: int | Literal["max_len"] | None = Field(
        None,
        description="None = each batch's longest real length / chunk_size, rounded up to an even number "
        ">= 2; max_len = the same from data.max_len, fixed per cell (the study pads every sequence to "
        "max_len); 1 = no hashing (every token in one bucket: a sliding window, for ablations/tests)",
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
    # Which kernel computes the windows (same semantics; raygrid.attention.lsh_fused.choose_kernel):
    # auto = the fused flex_attention kernel on CUDA without attention dropout, else the reference;
    # fused / reference force one (debugging, timing one against the other).
    implementation: Literal["auto", "fused", "reference"] = "auto"

    @model_validator(mode="before")
    @classmethod
    def _self_rule_of_qk(cls, data: Any) -> Any:
        if isinstance(data, dict) and "exclude_self" not in data:
            data = {**data, "exclude_self": data.get("qk", "separate") == "shared"}
        return data

    @field_validator("num_buckets")
    @classmethod
    def _even_buckets(cls, num_buckets: int | str | None) -> int | str | None:
        # Angular hashing argmax over [xR, -xR] yields an even number of buckets.
        if isinstance(num_buckets, int) and (num_buckets < 1 or (num_buckets > 1 and num_buckets % 2)):
            raise ValueError("must be 1, even, 'max_len' or unset")
        return num_buckets


def num_buckets_for(params: LshParams, num_tokens: float) -> int:
    """params.num_buckets, or num_tokens / chunk_size rounded up to an even number >= 2.

    `max_len` must have been fixed by `for_max_len` first (the layers get the fixed params).
    """
    if params.num_buckets == MAX_LEN:
        raise ValueError("attention.num_buckets: max_len is fixed from data.max_len when the model is built "
                         "(hf_bridge.attach_attention_state(..., max_len=...)); a bare kernel call needs a number")
    if params.num_buckets is not None:
        return params.num_buckets
    return _even_count(num_tokens, params.chunk_size)


def _even_count(num_tokens: float, chunk_size: int) -> int:
    return max(2, 2 * math.ceil(num_tokens / (2 * chunk_size)))


def for_max_len(params: LshParams, max_len: int | None) -> LshParams:
    """`params` with num_buckets: max_len replaced by max_len / chunk_size (even, >= 2); others unchanged."""
    if params.num_buckets != MAX_LEN:
        return params
    if max_len is None:
        raise ValueError("attention.num_buckets: max_len needs the cell's data.max_len")
    return params.model_copy(update={"num_buckets": _even_count(max_len, params.chunk_size)})


def flops(params: LshParams, n: float, hidden: int, heads: int) -> float:
    """Each of R rounds: the W = min(chunk·(1 + back + forward), N) keys of the window as in softmax,
    plus hashing q and k with B/2 rotations. For short inputs R × softmax (every round sees everything)."""
    window = min(params.chunk_size * (1 + params.look_backward + params.look_forward), n)
    # The kernel's own rule (it accepts a mean length); max_len is not known here: n stands in for it.
    buckets = _even_count(n, params.chunk_size) if params.num_buckets in (None, MAX_LEN) else params.num_buckets
    return params.num_hashes * (4 * hidden * window + 2 * hidden * buckets)


def plan_note(params: LshParams) -> str:
    """`qk=shared window=-1..+1 self=masked rounds=mean mask_within_chunks=False buckets=max_len/chunk`."""
    self_rule = "masked" if params.exclude_self else "kept"
    buckets = {None: "longest/chunk", MAX_LEN: "max_len/chunk"}.get(params.num_buckets, params.num_buckets)
    kernel = "" if params.implementation == "auto" else f" kernel={params.implementation}"
    return (f"qk={params.qk} window=-{params.look_backward}..+{params.look_forward} self={self_rule} "
            f"rounds={params.round_combine} mask_within_chunks={params.mask_within_chunks} buckets={buckets}{kernel}")


def length_check(params: LshParams, max_len: int) -> str | None:
    """A chunk longer than the input would make LSH one (costlier) softmax window."""
    if params.chunk_size > max_len:
        return (f"attention.chunk_size: {params.chunk_size} is longer than data.max_len {max_len} "
                f"(one chunk would hold the whole input)")
    return None


def cell_check(params: LshParams, weights: str, parent) -> str | None:
    """qk: shared ties each layer's W_K to its W_Q: that would throw away trained key weights."""
    if params.qk != "shared":
        return None
    if weights == "checkpoint":
        return ("attention.qk: shared ties each key projection to its query projection: it needs "
                "model.from_scratch: true (or weights from an earlier qk: shared stage); "
                "pretrained checkpoints take qk: separate")
    if parent is not None and getattr(parent, "qk", None) != "shared":
        return (f"attention.qk: shared would replace the key weights its parent stage trained "
                f"(parent attention {parent.kind}, not LSH qk: shared)")
    return None


VARIANT = Variant(
    kind="lsh",
    params=LshParams,
    title="LSH (Reformer, Kitaev et al. 2020)",
    kernel_module="raygrid.attention.lsh_layer",
    kernel="lsh_attention",
    adapter="lsh_forward",
    attach="attach_hashing",
    standalone="standalone",
    export_state="export_state_dict",
    bench_setup="allow_flex_recompiles",
    flops=flops,
    study=("lsh study R=2 L=64", {"qk": "shared", "look_forward": 1, "num_hashes": 2, "chunk_size": 64,
                                  "num_buckets": "max_len"}),
    bench=(*((f"lsh R={r} L={c}", {"num_hashes": r, "chunk_size": c}) for r in (2, 4) for c in (64, 128)),
           ("lsh R=2 L=64 mask", {"num_hashes": 2, "chunk_size": 64, "mask_within_chunks": True})),
    counts_forwards=True,
    ablations=(Ablation("mask_within_chunks", "lsh_mask", "LSH attention: masking within chunks"),),
    plan_note=plan_note,
    length_check=length_check,
    cell_check=cell_check,
    for_max_len=for_max_len,
)
