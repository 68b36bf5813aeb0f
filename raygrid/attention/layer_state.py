"""What every variant's transformers adapter shares: the padding mask, seeds, head width, layer checks.

State lives on the attention module HF hands to the adapter (e.g. BertSelfAttention), set by
raygrid.attention.bound.BoundAttention.attach: `raygrid_attention_params`, `raygrid_seed`,
`raygrid_layer`, optionally `raygrid_rope_base` and `raygrid_forward_clock`, plus what the variant's
own `attach` hook adds. Kernels never create hidden global state.
"""
from __future__ import annotations

import hashlib

import torch
from torch import nn


class ForwardClock:
    """Training forwards of one model so far, shared by its layers (a plain int: no device sync)."""

    def __init__(self) -> None:
        self.count = 0

    def tick(self, model: nn.Module, args) -> None:
        """Forward pre-hook: one tick per top-level training forward (checkpoint recomputes never reach it)."""
        if model.training:
            self.count += 1


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


def layer_params(module: nn.Module, attribute: str = "raygrid_attention_params"):
    """The attention params attached to `module`; a clear error if `attribute` was never attached."""
    if not hasattr(module, attribute):
        raise RuntimeError(f"{type(module).__name__} has no {attribute}: "
                           "call raygrid.attention.bound.attach_attention_state first")
    check_encoder(module)
    return module.raygrid_attention_params


def check_encoder(module: nn.Module) -> None:
    if getattr(module, "is_causal", False):
        raise NotImplementedError("raygrid's attention functions see only key padding (encoders only)")


def derive_seed(seed: int, layer: int, step: int, stream: str = "") -> int:
    """A 63-bit seed unique to (seed, layer, step, stream), stable across runs and platforms."""
    text = f"raygrid:{seed}:{layer}:{step}" if not stream else f"raygrid:{stream}:{seed}:{layer}:{step}"
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def head_dim(module: nn.Module) -> int:
    for name in ("attention_head_size", "head_dim"):
        if isinstance(getattr(module, name, None), int):
            return getattr(module, name)
    config = module.config
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def module_device(module: nn.Module) -> torch.device:
    tensor = next(module.parameters(), None)
    return tensor.device if tensor is not None else torch.device("cpu")
