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
projection is a registered buffer `favor_projection` (saved in checkpoints), the LSH rotation generator a
plain attribute. `attach_attention_state` creates it; kernels never create hidden global state.

Caveats: HF loads checkpoints before `attach_attention_state` runs, so a saved (redrawn) projection is
restored by attaching first and then `load_state_dict`; attaching alone redraws the step-0 projection
from the seed. Only padding reaches the kernels (sliding-window / causal patterns of other models are not
applied; causal modules raise). Attention-prob dropout is applied by LSH, ignored by FAVOR+. LSH training
calls advance the layer's generator, so gradient checkpointing (which re-runs forward) would rehash.
"""
from __future__ import annotations

import hashlib

import torch
from pydantic import TypeAdapter
from torch import nn

from raygrid.attention.favor import draw_projection, favor_attention
from raygrid.attention.lsh import lsh_attention
from raygrid.attention.params import AttentionParams, FavorParams, LshParams, SoftmaxParams

FAVOR_NAME = "raygrid_favor"
LSH_NAME = "raygrid_lsh"
# Child-module names that identify an attention module HF hands to the interface, per model family.
_PROJECTION_NAMES = (("query", "key", "value"), ("q_proj", "k_proj", "v_proj"), ("q_lin", "k_lin", "v_lin"), ("Wqkv",))


def implementation_name(params) -> str:
    """The `attn_implementation` string for `params`; registers raygrid's functions on first use."""
    params = _validated(params)
    if isinstance(params, SoftmaxParams):
        return params.implementation
    _register()
    return FAVOR_NAME if isinstance(params, FavorParams) else LSH_NAME


def attach_attention_state(model: nn.Module, params, seed: int) -> None:
    """Attach per-layer state (params, FAVOR projection drawn from seed + layer) to every attention module."""
    params = _validated(params)
    modules = attention_modules(model)
    if not modules:
        raise ValueError(f"no attention modules found in {type(model).__name__} (looked for {_PROJECTION_NAMES})")
    for layer, module in enumerate(modules):
        module.raygrid_attention_params = params
        module.raygrid_seed = seed
        module.raygrid_layer = layer
        if isinstance(params, FavorParams):
            projection = _projection(params, _head_dim(module), seed, layer, step=0)
            module.register_buffer("favor_projection", projection.to(_device(module)), persistent=True)
        if isinstance(params, LshParams):
            module.raygrid_lsh_seed = _derive_seed(seed, layer, 0)
            module.raygrid_lsh_generator = torch.Generator().manual_seed(module.raygrid_lsh_seed)


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
    """AttentionInterface adapter for LSH: fresh rotations per training call, fixed ones in eval."""
    params = _state(module, "raygrid_lsh_generator")
    mask = key_padding_mask(attention_mask, key.shape[-2])
    # Training draws from the layer's generator (a new hash every step, as in Reformer; deterministic given
    # the seed and the number of calls). Eval re-seeds, so evaluation never depends on training history.
    generator = module.raygrid_lsh_generator
    if not module.training:
        generator = torch.Generator().manual_seed(module.raygrid_lsh_seed)
    out = lsh_attention(query, key, value, mask, params=params, generator=generator, scaling=scaling, dropout_p=dropout)
    return out.transpose(1, 2), None  # (B, N, H, D)


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    for name, forward in ((FAVOR_NAME, favor_forward), (LSH_NAME, lsh_forward)):
        AttentionInterface.register(name, forward)
        AttentionMaskInterface.register(name, padding_only_mask)


def _state(module: nn.Module, attribute: str):
    if not hasattr(module, attribute):
        raise RuntimeError(f"{type(module).__name__} has no {attribute}: call hf_bridge.attach_attention_state first")
    if getattr(module, "is_causal", False):
        raise NotImplementedError("raygrid's FAVOR+/LSH kernels are non-causal (encoders only)")
    return module.raygrid_attention_params


def _validated(params):
    if isinstance(params, (SoftmaxParams, FavorParams, LshParams)):
        return params
    return TypeAdapter(AttentionParams).validate_python(params)


def _projection(params: FavorParams, head_dim: int, seed: int, layer: int, step: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(_derive_seed(seed, layer, step))
    return draw_projection(params.nb_features, head_dim, params.feature_map, params.orthogonal, generator)


def _derive_seed(seed: int, layer: int, step: int) -> int:
    """A 63-bit seed unique to (seed, layer, step), stable across runs and platforms."""
    digest = hashlib.sha256(f"raygrid:{seed}:{layer}:{step}".encode()).digest()
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
