"""Exact softmax attention: the reference kernel and the tests' oracle.

Vaswani et al. 2017, "Attention Is All You Need", https://arxiv.org/abs/1706.03762
Runs on torch.nn.functional.scaled_dot_product_attention (flash / memory-efficient backends on GPU).
Record: raygrid.attention.variants.softmax. Without rotary positions HF runs its own sdpa/eager functions;
`softmax_forward` is the adapter behind `raygrid_rope_softmax` (raygrid.attention.hf_bridge).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from raygrid.attention.layer_state import check_encoder, key_padding_mask
from raygrid.attention.variants.softmax import SoftmaxParams


def softmax_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    *,
    params: SoftmaxParams | None = None,
    scaling: float | None = None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """softmax(q kᵀ · scaling) v over the real keys; q, k, v (B, H, N, D) -> (B, H, N, D).

    `dropout_p` drops attention probabilities (training only: pass 0 in eval), as HF's sdpa does.
    """
    del params  # nothing to tune: "sdpa" vs "eager" only matters inside HF (see hf_bridge)
    attn_mask = None
    if key_padding_mask is not None:
        attn_mask = key_padding_mask[:, None, None, :].to(torch.bool)  # (B, 1, 1, N): True = attend
    return F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, scale=scaling)


def softmax_weights(
    query: torch.Tensor,
    key: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    *,
    scaling: float | None = None,
) -> torch.Tensor:
    """The dense attention matrix (B, H, N, N) in float32, for tests and inspection only."""
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    logits = torch.einsum("bhnd,bhmd->bhnm", query.float(), key.float()) * scaling
    if key_padding_mask is not None:
        logits = logits.masked_fill(~key_padding_mask[:, None, None, :].bool(), float("-inf"))
    return logits.softmax(dim=-1)


def softmax_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """AttentionInterface adapter: exact softmax through raygrid's kernel (attention-prob dropout as HF's sdpa)."""
    check_encoder(module)
    mask = key_padding_mask(attention_mask, key.shape[-2])
    out = softmax_attention(query, key, value, mask, scaling=scaling, dropout_p=dropout)  # HF passes 0 in eval
    return out.transpose(1, 2), None  # (B, N, H, D), like HF eager
