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

State: per-layer state lives on the module HF passes as `module` (e.g. BertSelfAttention):
`attach_attention_state` sets the params, seed and layer, runs the record's `attach` hook (FAVOR+: the
projection buffer `favor_projection`, saved in checkpoints; LSH: hash seeds and the Q = K tie) and, for
records with `counts_forwards` (LSH), a forward clock: a forward pre-hook on the model given to
`attach_attention_state` bumps a counter shared by its layers once per top-level training forward. Resume
it with `set_forward_count(model, n)` (n = training forwards so far); `forward_count` reads it for
checkpoints. `maybe_redraw` runs the record's `redraw` hook after optimizer steps (FAVOR+ redraws).

Rotary positions: `implementation_name(params, rope=True)` gives `raygrid_rope_<kind>`: rotate q and k
(raygrid.attention.rotary; base `module.raygrid_rope_base`, set by `attach_attention_state(…, rope_base=…)`),
then run the variant's adapter. Softmax runs raygrid's kernel, not HF's sdpa/eager functions (these names get
our (B, 1, 1, N) bool mask, which eager would add as an additive mask), so `implementation: eager` with rope
is the same `raygrid_rope_softmax` (no attention maps). FAVOR+ then estimates exp(rotated scores) (RoFormer
§3.3 rotates features instead); LSH hashes the rotated vectors, so buckets mix content and position. Pair
with positions.disable_learned_positions so that positions come from RoPE only.

Caveats: HF loads checkpoints before `attach_attention_state` runs, so saved (redrawn) state buffers are
restored by attaching first and then `load_state_dict` / `restore_layer_state`; attaching alone redraws the
step-0 state from the seed. Only padding reaches the kernels (sliding-window / causal patterns of other
models are not applied; causal modules raise). Attention-prob dropout is applied by LSH and softmax, ignored
by FAVOR+ and linear attention.
"""
from __future__ import annotations

import functools

import torch
from torch import nn

from raygrid.attention.layer_state import ForwardClock, check_encoder, key_padding_mask, tick_forward_clock
from raygrid.attention.registry import records, validated, variant_of
from raygrid.attention.rotary import apply_rotary

PREFIX, ROPE_PREFIX = "raygrid_", "raygrid_rope_"
# Child-module names that identify an attention module HF hands to the interface, per model family.
_PROJECTION_NAMES = (("query", "key", "value"), ("q_proj", "k_proj", "v_proj"), ("q_lin", "k_lin", "v_lin"), ("Wqkv",))
__all__ = ["attach_attention_state", "attention_modules", "forward_count", "implementation_name", "key_padding_mask",
           "layer_state_tensors", "maybe_redraw", "padding_only_mask", "redraws", "restore_layer_state",
           "set_forward_count"]


def implementation_name(params, rope: bool = False) -> str:
    """The `attn_implementation` string for `params` (rotary variant if `rope`); registers raygrid's functions."""
    params = validated(params)
    record = variant_of(params)
    builtin = record.builtin_implementation(params) if record.builtin_implementation and not rope else None
    if builtin:
        return builtin
    _register()
    return f"{ROPE_PREFIX if rope else PREFIX}{record.kind}"


def attach_attention_state(model: nn.Module, params, seed: int, rope_base: float | None = None,
                           max_len: int | None = None) -> None:
    """Attach per-layer state (params, the variant's seeded state, rotary base, forward clock) to `model`.

    `max_len`: the cell's data.max_len, for settings that follow it (LSH num_buckets: max_len).
    """
    params = validated(params)
    record = variant_of(params)
    modules = attention_modules(model)
    if not modules:
        raise ValueError(f"no attention modules found in {type(model).__name__} (looked for {_PROJECTION_NAMES})")
    _check_implementation(model, params, rope_base)
    if record.for_max_len is not None:
        params = record.for_max_len(params, max_len)
    attach = record.hook("attach")
    clock = ForwardClock()
    for layer, module in enumerate(modules):
        module.raygrid_attention_params = params
        module.raygrid_seed = seed
        module.raygrid_layer = layer
        if rope_base is not None:
            module.raygrid_rope_base = float(rope_base)
        elif hasattr(module, "raygrid_rope_base"):
            del module.raygrid_rope_base
        if attach is not None:
            attach(module, params, seed, layer)
        if record.counts_forwards:
            module.raygrid_forward_clock = clock
    if record.counts_forwards:
        model.raygrid_forward_clock = clock
        if not any(hook is tick_forward_clock for hook in model._forward_pre_hooks.values()):
            model.register_forward_pre_hook(tick_forward_clock)  # a module-level fn: deepcopy/pickle safe


def set_forward_count(model: nn.Module, forwards: int) -> bool:
    """Resume after `forwards` training forwards (the next one counts as forward `forwards + 1` did).

    `model`: the one given to `attach_attention_state` or any module containing it; False if its variant
    counts no forwards.
    """
    if forwards < 0:
        raise ValueError(f"forwards must be >= 0, got {forwards}")
    clocks = {id(m.raygrid_forward_clock): m.raygrid_forward_clock for m in model.modules()
              if hasattr(m, "raygrid_forward_clock")}
    for clock in clocks.values():
        clock.count = forwards
    return bool(clocks)


def forward_count(model: nn.Module) -> int | None:
    """Training forwards the attention layers of `model` have counted (None if none count); save it with checkpoints."""
    counts = {m.raygrid_forward_clock.count for m in model.modules() if hasattr(m, "raygrid_forward_clock")}
    return max(counts) if counts else None


def redraws(params) -> bool:
    """Whether the variant refreshes random state after optimizer steps (then call `maybe_redraw` each step)."""
    return variant_of(validated(params)).redraw is not None


def maybe_redraw(model: nn.Module, params, step: int) -> bool:
    """Run the variant's redraw hook after optimizer step `step` > 0, in training only; True if state changed."""
    params = validated(params)
    redraw = variant_of(params).hook("redraw")
    if redraw is None or step <= 0 or not model.training:
        return False
    changed = [redraw(module, params, step) for module in attention_modules(model)
               if hasattr(module, "raygrid_attention_params")]
    return any(changed)


def layer_state_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """`{layer}.{buffer}` -> tensor (CPU) of every state buffer the layers' records name, for exported weights."""
    tensors = {}
    for layer, module in enumerate(attention_modules(model)):
        params = getattr(module, "raygrid_attention_params", None)
        for name in variant_of(params).state_buffers if params is not None else ():
            if hasattr(module, name):
                tensors[f"{layer}.{name}"] = getattr(module, name).detach().cpu()
    return tensors


def restore_layer_state(model: nn.Module, saved: dict[str, torch.Tensor]) -> int:
    """Copy saved state buffers into the layers that hold the same buffer with the same shape; returns how many.

    Layers whose variant or shape differs keep their own (e.g. a FAVOR+ stage followed by softmax).
    """
    restored = 0
    for layer, module in enumerate(attention_modules(model)):
        params = getattr(module, "raygrid_attention_params", None)
        for name in variant_of(params).state_buffers if params is not None else ():
            tensor, own = saved.get(f"{layer}.{name}"), getattr(module, name, None)
            if tensor is not None and own is not None and own.shape == tensor.shape:
                own.copy_(tensor)
                restored += 1
    return restored


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
                           "hf_bridge.attach_attention_state(model, params, seed, rope_base=...) first")
    return base


def _check_implementation(model: nn.Module, params, rope_base: float | None) -> None:
    """The model's raygrid implementation must match params, and rope_base be given iff it is a rope one."""
    if rope_base is not None and not rope_base > 0:
        raise ValueError(f"rope_base must be positive, got {rope_base}")
    implementation = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if implementation is None:  # not an HF model (e.g. a wrapper): nothing to compare against
        return
    uses_rope = implementation.startswith(ROPE_PREFIX)
    if uses_rope and rope_base is None:
        raise ValueError(f"{implementation} applies rotary positions: pass rope_base (e.g. 10000.0)")
    if rope_base is not None and not uses_rope:
        raise ValueError(f"rope_base={rope_base} given but the model runs {implementation!r}, which ignores it: "
                         "build it with implementation_name(params, rope=True)")
    expected = implementation_name(params, rope=uses_rope)
    if implementation.startswith(PREFIX) and implementation != expected:
        raise ValueError(f"the model runs {implementation} but the attention params need {expected}")
