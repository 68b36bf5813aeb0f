"""Linear attention with the elu(x)+1 feature map, non-causal.

Katharopoulos, Vyas, Pappas, Fleuret 2020, "Transformers are RNNs: Fast Autoregressive Transformers with
Linear Attention", ICML, https://arxiv.org/abs/2006.16236 (eq. 4-7); reference code: fast-transformers'
LinearAttention (https://github.com/idiap/fast-transformers).

    φ(x) = elu(x) + 1 > 0,   out_i = φ(q_i)ᵀ (Σ_j φ(k_j) v_jᵀ) / (φ(q_i)ᵀ Σ_j φ(k_j))

over the real keys j. Σ_j φ(k_j) v_jᵀ is a (D, D) matrix per head, so time and memory grow as O(N·D²)
instead of O(N²·D). The similarity φ(q)ᵀφ(k) replaces exp(qᵀk/√d) outright (it approximates nothing),
so, as in the paper and fast-transformers, q and k are not scaled: HF's `scaling` is accepted and unused.
Padded queries output zero. Record: raygrid.attention.variants.linear.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from raygrid.attention.layer_state import key_padding_mask, layer_params
from raygrid.attention.variants.linear import LinearParams

_DEFAULTS = LinearParams()


def linear_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    *,
    params: LinearParams | None = None,
    scaling: float | None = None,
) -> torch.Tensor:
    """elu+1 linear attention; q, k (B, H, N, D), v (B, H, N, E) -> (B, H, N, E) in the input dtype.

    Computed in float32 with autocast off: the sums over N tokens of φ(k)vᵀ lose digits in bf16.
    """
    del scaling  # see the module docstring: the feature map is not a softmax estimate
    eps = (params or _DEFAULTS).eps
    out_dtype = query.dtype
    with torch.autocast(device_type=query.device.type, enabled=False):
        phi_q = F.elu(query.float()) + 1  # (B, H, N, D)
        phi_k = F.elu(key.float()) + 1  # (B, H, N, D)
        v = value.float()
        real = None
        if key_padding_mask is not None:
            real = key_padding_mask.to(torch.bool)[:, None, :, None]  # (B, 1, N, 1)
            phi_k = phi_k.masked_fill(~real, 0.0)  # padded keys add nothing to either sum
            v = v.masked_fill(~real, 0.0)  # and inf/nan in padded values cannot reach them
        kv = torch.einsum("bhnd,bhne->bhde", phi_k, v)  # (B, H, D, E)
        normaliser = phi_k.sum(dim=-2)  # (B, H, D)
        numerator = torch.einsum("bhnd,bhde->bhne", phi_q, kv)  # (B, H, N, E)
        denominator = torch.einsum("bhnd,bhd->bhn", phi_q, normaliser)  # (B, H, N)
        out = numerator / denominator.clamp_min(eps)[..., None]
        if real is not None:
            out = out.masked_fill(~real, 0.0)  # padded queries: zero, as LSH's
    return out.to(out_dtype)


def linear_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """AttentionInterface adapter. Attention-prob dropout has no analogue here (no probabilities) and is ignored."""
    params = layer_params(module)
    mask = key_padding_mask(attention_mask, key.shape[-2])
    out = linear_attention(query, key, value, mask, params=params, scaling=scaling)
    return out.transpose(1, 2), None  # (B, N, H, E), like HF eager
