"""The ONLY module that knows transformers' attention registries (transformers 5.x); it reads records, never kinds.

HF encoders call `ALL_ATTENTION_FUNCTIONS[config._attn_implementation](module, q, k, v, mask, scaling=…,
dropout=…, **kw)` with q/k/v (B, H, N, D) and expect `(out (B, N, H, D), weights | None)`. Each attention
variant's record (raygrid.attention.registry) names its adapter; we register it as `raygrid_<kind>` and,
behind rotary positions, as `raygrid_rope_<kind>`, plus a mask builder in `AttentionMaskInterface` under the
same names: without one, HF skips mask creation and passes `attention_mask=None`, silently attending to padding.

Mask: HF's `sdpa_mask` would build a (B, 1, N, N) bool tensor for BERT, O(N²) memory, exactly what the
efficient variants avoid. Our builder returns the (B, 1, 1, N) key-padding mask (True = real) instead; the
adapters also accept full 4D bool/additive masks (a user-supplied 4D mask is passed through untouched by
HF) and `None` (= no padding), and reduce them to (B, N) (raygrid.attention.layer_state.key_padding_mask).

State: per-layer state lives on the module HF passes as `module` (e.g. BertSelfAttention), set by
raygrid.attention.bound (a cell's variant bound to its params once, at model build): params, seed, layer,
the record's `attach` hook (FAVOR+: the projection buffer `favor_projection`, saved in checkpoints; LSH:
hash seeds and the Q = K tie) and, for records with `counts_forwards` (LSH), the bound object's forward
clock. The training loop asks the bound object about redraws and counters, never this module.

Rotary positions: `implementation_name(params, rope=True)` gives `raygrid_rope_<kind>`: rotate q and k
(raygrid.attention.rotary; base `module.raygrid_rope_base`, set by `bound.bind(…, rope_base=…)`),
then run the variant's adapter. Softmax runs raygrid's kernel, not HF's sdpa/eager functions (these names get
our (B, 1, 1, N) bool mask, which eager would add as an additive mask), so `implementation: eager` with rope
is the same `raygrid_rope_softmax` (no attention maps). FAVOR+ then estimates exp(rotated scores) (RoFormer
§3.3 rotates features instead); LSH hashes the rotated vectors, so buckets mix content and position. Pair
with positions.disable_learned_positions so that positions come from RoPE only.

Caveats: HF loads checkpoints before the bound attention attaches, so saved (redrawn) state buffers are
restored by attaching first and then `load_state_dict` / `BoundAttention.restore_layer_state`; attaching alone redraws the
step-0 state from the seed. Only padding reaches the kernels (sliding-window / causal patterns of other
models are not applied; causal modules raise). Attention-prob dropout is applied by LSH and softmax, ignored
by FAVOR+ and linear attention.
"""
from __future__ import annotations

import functools

import torch
from torch import nn

from raygrid.attention.layer_state import check_encoder, key_padding_mask
from raygrid.attention.record import Variant
from raygrid.attention.registry import records, validated, variant_of
from raygrid.attention.rotary import apply_rotary

PREFIX, ROPE_PREFIX = "raygrid_", "raygrid_rope_"
# Child-module names that identify an attention module HF hands to the interface, per model family.
_PROJECTION_NAMES = (("query", "key", "value"), ("q_proj", "k_proj", "v_proj"), ("q_lin", "k_lin", "v_lin"), ("Wqkv",))
__all__ = ["ROPE_PREFIX", "attention_modules", "implementation_name", "key_padding_mask", "padding_only_mask",
           "record_implementation"]


def implementation_name(params, rope: bool = False) -> str:
    """The `attn_implementation` string for `params` (rotary variant if `rope`); registers raygrid's functions."""
    params = validated(params)
    return record_implementation(variant_of(params), params, rope)


def record_implementation(record: Variant, params, rope: bool = False) -> str:
    """implementation_name for params already validated as `record`'s."""
    builtin = record.builtin_implementation(params) if record.builtin_implementation and not rope else None
    if builtin:
        return builtin
    _register()
    return f"{ROPE_PREFIX if rope else PREFIX}{record.kind}"


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """Modules that own q/k/v projections (BertSelfAttention, ModernBertAttention, …), in model order."""
    found = []
    for module in model.modules():
        children = dict(module.named_children())
        if any(all(name in children for name in names) for names in _PROJECTION_NAMES):
            found.append(module)
    return found


def padding_only_mask(
    batch_size: int,
    q_length: int,
    kv_length: int,
    q_offset: int = 0,
    kv_offset: int = 0,
    mask_function=None,
    attention_mask: torch.Tensor | None = None,
    **kwargs,
) -> torch.Tensor | None:
    """AttentionMaskInterface builder: (B, 1, 1, kv_length) bool key-padding mask (True = real), or None."""
    if attention_mask is None:
        return None
    mask = attention_mask.to(torch.bool)[:, kv_offset : kv_offset + kv_length]
    if mask.shape[-1] < kv_length:  # HF convention: keys beyond the 2D mask are real
        mask = torch.nn.functional.pad(mask, (0, kv_length - mask.shape[-1]), value=True)
    return mask[:, None, None, :]  # (B, 1, 1, N)


def with_rotary(adapter):
    """The adapter behind rotary positions: rotate q and k by position, then attend as the variant does."""

    @functools.wraps(adapter)
    def rope_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        query, key = apply_rotary(query, key, _rope_base(module))
        return adapter(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)

    return rope_forward


@functools.cache  # once per process: the interfaces are global registries
def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    for record in records():
        adapter = record.hook("adapter")
        for name, forward in ((PREFIX + record.kind, adapter), (ROPE_PREFIX + record.kind, with_rotary(adapter))):
            AttentionInterface.register(name, forward)
            AttentionMaskInterface.register(name, padding_only_mask)


def _rope_base(module: nn.Module) -> float:
    check_encoder(module)
    base = getattr(module, "raygrid_rope_base", None)
    if base is None:
        raise RuntimeError(f"{type(module).__name__} has no raygrid_rope_base: call "
                           "raygrid.attention.bound.attach_attention_state(model, params, seed, rope_base=...) first")
    return base
