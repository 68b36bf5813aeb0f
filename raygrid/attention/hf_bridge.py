"""The ONLY module that knows transformers' attention calling convention (transformers 5.x).

HF encoders call `ALL_ATTENTION_FUNCTIONS[config._attn_implementation](module, q, k, v, mask, scaling=…,
dropout=…, **kw)` with q/k/v (B, H, N, D) and expect `(out (B, N, H, D), weights | None)`. We register one
adapter per efficient variant there, plus a mask builder in `AttentionMaskInterface` under the same name:
without one, HF skips mask creation and passes `attention_mask=None`, silently attending to padding.

Mask: HF's `sdpa_mask` would build a (B, 1, N, N) bool tensor for BERT, O(N²) memory, exactly what the
efficient variants avoid. Our builder returns the (B, 1, 1, N) key-padding mask (True = real) instead; the
adapters also accept full 4D bool/additive masks (a user-supplied 4D mask is passed through untouched by
HF) and `None` (= no padding), and reduce them to (B, N).

State: per-layer state lives on the module HF passes as `module` (e.g. BertSelfAttention): the FAVOR+
projection is a registered buffer `favor_projection` (saved in checkpoints), the LSH seed and forward
counter and the rotary base plain attributes. `attach_attention_state` creates it; kernels never create
hidden global state.

Rotary positions: `implementation_name(params, rope=True)` gives `raygrid_rope_{softmax,favor,lsh}`: rotate
q and k (raygrid.attention.rotary; base `module.raygrid_rope_base`, set by `attach_attention_state(…,
rope_base=…)`), then run the variant. Softmax runs raygrid's kernel, not HF's sdpa/eager functions (these
names get our (B, 1, 1, N) bool mask, which eager would add as an additive mask), so `implementation:
eager` with rope is the same `raygrid_rope_softmax` (no attention maps). Pair with
positions.disable_learned_positions so that positions come from RoPE only.

LSH hashing: in eval every call hashes with rotations from (seed, layer), fixed. In training, rotations
come from (seed, layer, forward count): a forward pre-hook on the model given to `attach_attention_state`
bumps a counter shared by its LSH layers once per top-level training forward, so every training forward
hashes afresh (as Reformer), deterministically given the seed, and a layer that gradient checkpointing
re-runs during backward hashes exactly as in its forward. Resume with `set_lsh_step(model, n)` (n =
training forwards so far, e.g. optimizer steps × accumulation micro-batches). With checkpointing, call
backward before the next training forward of the same model (the recompute reads the current count).

LSH qk: shared: attach_attention_state ties each layer's key projection to its query projection
(raygrid.attention.qk_tying), so q = k and the kernel reads q for both (Reformer's and the study's rule).

Caveats: HF loads checkpoints before `attach_attention_state` runs, so a saved (redrawn) projection is
restored by attaching first and then `load_state_dict`; attaching alone redraws the step-0 projection
from the seed. Only padding reaches the kernels (sliding-window / causal patterns of other models are not
applied; causal modules raise). Attention-prob dropout is applied by LSH and rope softmax, ignored by FAVOR+.
"""
from __future__ import annotations

import functools
import hashlib

import torch
from pydantic import TypeAdapter
from torch import nn

from raygrid.attention.favor import draw_projection, favor_attention
from raygrid.attention.lsh import lsh_attention
from raygrid.attention.params import AttentionParams, FavorParams, LshParams, SoftmaxParams
from raygrid.attention.qk_tying import tie_query_key
from raygrid.attention.rotary import apply_rotary
from raygrid.attention.softmax import softmax_attention

FAVOR_NAME = "raygrid_favor"
LSH_NAME = "raygrid_lsh"
ROPE_NAMES = {"softmax": "raygrid_rope_softmax", "favor": "raygrid_rope_favor", "lsh": "raygrid_rope_lsh"}
# Child-module names that identify an attention module HF hands to the interface, per model family.
_PROJECTION_NAMES = (("query", "key", "value"), ("q_proj", "k_proj", "v_proj"), ("q_lin", "k_lin", "v_lin"), ("Wqkv",))


def implementation_name(params, rope: bool = False) -> str:
    """The `attn_implementation` string for `params` (rotary variant if `rope`); registers raygrid's functions."""
    params = _validated(params)
    if isinstance(params, SoftmaxParams) and not rope:
        return params.implementation
    _register()
    if rope:
        return ROPE_NAMES[params.kind]  # softmax "eager" included: see the module docstring
    return FAVOR_NAME if isinstance(params, FavorParams) else LSH_NAME


def attach_attention_state(model: nn.Module, params, seed: int, rope_base: float | None = None) -> None:
    """Attach per-layer state (params, FAVOR projection / LSH seeds from seed + layer, rotary base) to `model`."""
    params = _validated(params)
    modules = attention_modules(model)
    if not modules:
        raise ValueError(f"no attention modules found in {type(model).__name__} (looked for {_PROJECTION_NAMES})")
    _check_implementation(model, params, rope_base)
    clock = _LshClock()
    for layer, module in enumerate(modules):
        module.raygrid_attention_params = params
        module.raygrid_seed = seed
        module.raygrid_layer = layer
        if rope_base is not None:
            module.raygrid_rope_base = float(rope_base)
        elif hasattr(module, "raygrid_rope_base"):
            del module.raygrid_rope_base
        if isinstance(params, FavorParams):
            projection = _projection(params, _head_dim(module), seed, layer, step=0)
            module.register_buffer("favor_projection", projection.to(_device(module)), persistent=True)
        if isinstance(params, LshParams):
            module.raygrid_lsh_seed = _derive_seed(seed, layer, 0)
            module.raygrid_lsh_clock = clock
            if params.qk == "shared":
                tie_query_key(module)
    if isinstance(params, LshParams):
        model.raygrid_lsh_clock = clock
        if not any(hook is _tick_lsh_clock for hook in model._forward_pre_hooks.values()):
            model.register_forward_pre_hook(_tick_lsh_clock)  # a module-level fn: deepcopy/pickle safe


def set_lsh_step(model: nn.Module, forwards: int) -> bool:
    """Resume LSH hashing after `forwards` training forwards (the next hashes as forward `forwards + 1` did).

    `model`: the one given to `attach_attention_state` or any module containing it; False if no LSH layers.
    """
    if forwards < 0:
        raise ValueError(f"forwards must be >= 0, got {forwards}")
    clocks = {id(m.raygrid_lsh_clock): m.raygrid_lsh_clock for m in model.modules() if hasattr(m, "raygrid_lsh_clock")}
    for clock in clocks.values():
        clock.count = forwards
    return bool(clocks)


def lsh_step(model: nn.Module) -> int | None:
    """Training forwards the LSH layers of `model` have counted (None without LSH); save it with checkpoints."""
    counts = {m.raygrid_lsh_clock.count for m in model.modules() if hasattr(m, "raygrid_lsh_clock")}
    return max(counts) if counts else None


def maybe_redraw(model: nn.Module, params, step: int) -> bool:
    """Redraw FAVOR projections at step > 0 with step % redraw_interval == 0, in training only."""
    params = _validated(params)
    if not isinstance(params, FavorParams) or params.redraw_interval == 0 or not model.training:
        return False
    if step <= 0 or step % params.redraw_interval:
        return False
    for module in attention_modules(model):
        if hasattr(module, "favor_projection"):
            fresh = _projection(params, _head_dim(module), module.raygrid_seed, module.raygrid_layer, step)
            module.favor_projection.copy_(fresh)  # in place: device, dtype and DDP buffer identity kept
    return True


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """Modules that own q/k/v projections (BertSelfAttention, ModernBertAttention, …), in model order."""
    found = []
    for module in model.modules():
        children = dict(module.named_children())
        if any(all(name in children for name in names) for names in _PROJECTION_NAMES):
            found.append(module)
    return found


def key_padding_mask(attention_mask: torch.Tensor | None, num_keys: int) -> torch.Tensor | None:
    """HF mask (None, (B, N) 1/0, (B, 1, Q, N) bool or additive float) -> (B, N) bool, True = real key."""
    if attention_mask is None:
        return None
    mask = attention_mask
    if mask.dim() == 2:
        mask = mask != 0  # HF's 2D convention: 1 = real, 0 = padding
    elif mask.dtype != torch.bool:  # 4D additive: 0 = attend, dtype-min (or -inf) = masked
        mask = mask > torch.finfo(mask.dtype).min / 2
    if mask.dim() == 4:
        mask = mask.any(dim=-2)[:, 0]  # a key is real if any query may attend it: (B, N)
    if mask.shape[-1] != num_keys:
        raise ValueError(f"mask covers {mask.shape[-1]} keys, attention has {num_keys}")
    return mask


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


def favor_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """AttentionInterface adapter for FAVOR+. Attention-prob dropout has no FAVOR analogue and is ignored."""
    params = _state(module, "favor_projection")
    mask = key_padding_mask(attention_mask, key.shape[-2])
    out = favor_attention(query, key, value, mask, params=params, projection=module.favor_projection, scaling=scaling)
    return out.transpose(1, 2), None  # (B, N, H, D), like HF eager


def lsh_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """AttentionInterface adapter for LSH: rotations per training forward, fixed ones in eval."""
    params = _state(module, "raygrid_lsh_clock")
    if params.qk == "shared" and not getattr(module, "raygrid_qk_tied", False):
        raise RuntimeError(f"{type(module).__name__}: LSH qk: shared needs tied projections (attach_attention_state)")
    mask = key_padding_mask(attention_mask, key.shape[-2])
    # Training: a new hash every forward (as in Reformer), a pure function of (seed, layer, forward count),
    # so a checkpointed layer re-run in backward hashes the same. Eval: fixed, independent of training.
    seed = module.raygrid_lsh_seed
    if module.training:
        seed = _derive_seed(module.raygrid_seed, module.raygrid_layer, module.raygrid_lsh_clock.count, "lsh-train")
    generator = torch.Generator().manual_seed(seed)
    out = lsh_attention(query, key, value, mask, params=params, generator=generator, scaling=scaling, dropout_p=dropout)
    return out.transpose(1, 2), None  # (B, N, H, D)


def rope_softmax_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Rotary q/k, then exact softmax through raygrid's kernel (attention-prob dropout as HF's sdpa)."""
    query, key = apply_rotary(query, key, _rope_base(module))
    mask = key_padding_mask(attention_mask, key.shape[-2])
    out = softmax_attention(query, key, value, mask, scaling=scaling, dropout_p=dropout)  # HF passes 0 in eval
    return out.transpose(1, 2), None  # (B, N, H, D)


def rope_favor_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Rotary q/k, then FAVOR+, which estimates exp(rotated scores) (RoFormer §3.3 rotates features instead)."""
    query, key = apply_rotary(query, key, _rope_base(module))
    return favor_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)


def rope_lsh_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Rotary q/k, then LSH (hashing sees the rotated vectors, so buckets mix content and position)."""
    query, key = apply_rotary(query, key, _rope_base(module))
    return lsh_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)


class _LshClock:
    """Training forwards of one model so far, shared by its LSH layers (a plain int: no device sync)."""

    def __init__(self) -> None:
        self.count = 0


def _tick_lsh_clock(model: nn.Module, args) -> None:
    """Forward pre-hook: one tick per top-level training forward (checkpoint recomputes never reach it)."""
    if model.training and hasattr(model, "raygrid_lsh_clock"):
        model.raygrid_lsh_clock.count += 1


@functools.cache  # once per process: the interfaces are global registries
def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    forwards = {FAVOR_NAME: favor_forward, LSH_NAME: lsh_forward, ROPE_NAMES["softmax"]: rope_softmax_forward,
                ROPE_NAMES["favor"]: rope_favor_forward, ROPE_NAMES["lsh"]: rope_lsh_forward}
    for name, forward in forwards.items():
        AttentionInterface.register(name, forward)
        AttentionMaskInterface.register(name, padding_only_mask)


def _rope_base(module: nn.Module) -> float:
    _check_encoder(module)
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
    uses_rope = implementation in ROPE_NAMES.values()
    if uses_rope and rope_base is None:
        raise ValueError(f"{implementation} applies rotary positions: pass rope_base (e.g. 10000.0)")
    if rope_base is not None and not uses_rope:
        raise ValueError(f"rope_base={rope_base} given but the model runs {implementation!r}, which ignores it: "
                         "build it with implementation_name(params, rope=True)")
    expected = implementation_name(params, rope=uses_rope)
    if implementation.startswith("raygrid_") and implementation != expected:
        raise ValueError(f"the model runs {implementation} but the attention params need {expected}")


def _state(module: nn.Module, attribute: str):
    if not hasattr(module, attribute):
        raise RuntimeError(f"{type(module).__name__} has no {attribute}: call hf_bridge.attach_attention_state first")
    _check_encoder(module)
    return module.raygrid_attention_params


def _check_encoder(module: nn.Module) -> None:
    if getattr(module, "is_causal", False):
        raise NotImplementedError("raygrid's attention functions see only key padding (encoders only)")


def _validated(params):
    if isinstance(params, (SoftmaxParams, FavorParams, LshParams)):
        return params
    return TypeAdapter(AttentionParams).validate_python(params)


def _projection(params: FavorParams, head_dim: int, seed: int, layer: int, step: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(_derive_seed(seed, layer, step))
    return draw_projection(params.nb_features, head_dim, params.feature_map, params.orthogonal, generator)


def _derive_seed(seed: int, layer: int, step: int, stream: str = "") -> int:
    """A 63-bit seed unique to (seed, layer, step, stream), stable across runs and platforms."""
    text = f"raygrid:{seed}:{layer}:{step}" if not stream else f"raygrid:{stream}:{seed}:{layer}:{step}"
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _head_dim(module: nn.Module) -> int:
    for name in ("attention_head_size", "head_dim"):
        if isinstance(getattr(module, name, None), int):
            return getattr(module, name)
    config = module.config
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def _device(module: nn.Module) -> torch.device:
    tensor = next(module.parameters(), None)
    return tensor.device if tensor is not None else torch.device("cpu")
