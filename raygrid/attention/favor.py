"""FAVOR+ linear attention (non-causal) with positive or hyperbolic random features.

Choromanski et al. 2021, "Rethinking Attention with Performers", ICLR, https://arxiv.org/abs/2009.14794
(Lemma 1: positive features; Lemma 2: hyperbolic features, Var(φ*) <= Var(φ); Theorem 2: orthogonal ω).

softmax(q kᵀ/√d) v is approximated by D⁻¹ φ(q') (φ(k')ᵀ v) with q' = q·d^-1/4, k' = k·d^-1/4, so that
q'ᵀk' = qᵀk/√d and E[φ(q')ᵀφ(k')] = exp(qᵀk/√d). Cost O(N·M·D) instead of O(N²·D).

    φ(x)  = exp(-‖x‖²/2)/√m  · [exp(ω₁ᵀx) … exp(ω_mᵀx)]                           (positive, M = m)
    φ*(x) = exp(-‖x‖²/2)/√(2m) · [exp(ω₁ᵀx) … exp(ω_mᵀx), exp(-ω₁ᵀx) … exp(-ω_mᵀx)]
                                                          (hyperbolic, M = 2m)

`nb_features` counts feature columns M. The projection holds the m directions ω as rows (m, D).

Record: raygrid.attention.variants.favor. Per-layer state: the projection is a registered buffer
`favor_projection` on each attention module (saved in checkpoints and exported weights), drawn from
(seed, layer, step) and redrawn every `redraw_interval` optimizer steps when that is > 0.
"""
from __future__ import annotations

import math

import torch

from raygrid.attention.favor_chunked import chunked_favor
from raygrid.attention.layer_state import derive_seed, head_dim, key_padding_mask, layer_params, module_device
from raygrid.attention.variants.favor import FavorParams


def draw_projection(
    nb_features: int,
    head_dim: int,
    feature_map: str = "hyperbolic",
    orthogonal: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random directions ω as rows, (m, head_dim) float32; m = nb_features (positive) or nb_features/2."""
    if feature_map == "hyperbolic":
        if nb_features % 2:
            raise ValueError(f"hyperbolic features need an even nb_features, got {nb_features}")
        m = nb_features // 2
    elif feature_map == "positive":
        m = nb_features
    else:
        raise ValueError(f"unknown feature_map {feature_map!r}")
    device = generator.device if generator is not None else torch.device("cpu")
    if not orthogonal:
        return torch.randn(m, head_dim, generator=generator, device=device)
    blocks = []
    for _ in range(math.ceil(m / head_dim)):
        gaussian = torch.randn(head_dim, head_dim, generator=generator, device=device)
        q, r = torch.linalg.qr(gaussian)
        q = q * torch.sign(torch.diagonal(r))[None, :]  # sign fix -> Haar-distributed orthogonal matrix
        blocks.append(q.T)  # rows are orthonormal directions
    directions = torch.cat(blocks, dim=0)[:m]  # (m, D)
    # Row norms drawn from chi(D) (the norm of a D-dim Gaussian), so every row is marginally N(0, I)
    # and the estimator stays unbiased while rows within a block remain exactly orthogonal.
    norms = torch.randn(m, head_dim, generator=generator, device=device).norm(dim=1)
    return directions * norms[:, None]


def log_features(x: torch.Tensor, projection: torch.Tensor, feature_map: str) -> torch.Tensor:
    """log φ(x) (positive) or log φ*(x) (hyperbolic); x (..., N, D) -> (..., N, M)."""
    proj = x @ projection.transpose(-1, -2)  # (..., N, m); a batch of projections (T, m, D) also works
    if feature_map == "hyperbolic":
        proj = torch.cat([proj, -proj], dim=-1)  # (..., N, 2m)
    # 1/√m for φ and 1/√(2m) for φ* are both 1/√M with M the column count.
    return proj - x.pow(2).sum(-1, keepdim=True) / 2 - 0.5 * math.log(proj.shape[-1])


def random_features(x: torch.Tensor, projection: torch.Tensor, feature_map: str) -> torch.Tensor:
    """Unstabilised φ(x) / φ*(x) in float32; E[φ(q)ᵀφ(k)] = exp(qᵀk). For tests and analysis."""
    return log_features(x.float(), projection.float(), feature_map).exp()


def favor_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    *,
    params: FavorParams,
    projection: torch.Tensor,
    scaling: float | None = None,
    chunk_rows: int | None = None,
) -> torch.Tensor:
    """Non-causal FAVOR+ attention; q, k, v (B, H, N, D) -> (B, H, N, D) in the input dtype.

    The result of `favor_attention_dense` without its (B, H, N, M) feature tensors: features are built
    over chunks of `chunk_rows` tokens and rebuilt in backward (raygrid.attention.favor_chunked).
    Computed in float32 with autocast off: the feature exponents ωᵀx - ‖x‖²/2 reach hundreds for
    large-norm inputs, and bf16/fp16 keep only 2-3 significant digits of them. The projection is state,
    not a parameter: no gradient reaches it.
    """
    out_dtype = query.dtype
    root = math.sqrt(query.shape[-1] ** -0.5 if scaling is None else scaling)  # split the scale over q and k
    with torch.autocast(device_type=query.device.type, enabled=False):
        weights = projection.detach().to(device=query.device, dtype=torch.float32)
        omegas = torch.cat([weights, -weights]) if params.feature_map == "hyperbolic" else weights  # (M, D)
        real = None if key_padding_mask is None else key_padding_mask.to(device=query.device, dtype=torch.bool)
        out = chunked_favor(query, key, value, real, omegas, root, params.stabilizer, chunk_rows)
    return out.to(out_dtype)


def favor_attention_dense(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    *,
    params: FavorParams,
    projection: torch.Tensor,
    scaling: float | None = None,
) -> torch.Tensor:
    """The readable FAVOR+ formula with whole (B, H, N, M) features: the oracle `favor_attention` is tested against."""
    out_dtype = query.dtype
    head_dim = query.shape[-1]
    root = math.sqrt(head_dim**-0.5 if scaling is None else scaling)
    with torch.autocast(device_type=query.device.type, enabled=False):
        weights = projection.to(device=query.device, dtype=torch.float32)
        log_q = log_features(query.float() * root, weights, params.feature_map)  # (B, H, N, M)
        log_k = log_features(key.float() * root, weights, params.feature_map)  # (B, H, N, M)
        v = value.float()
        if key_padding_mask is not None:
            real = key_padding_mask.to(torch.bool)[:, None, :, None]  # (B, 1, N, 1)
            log_k = log_k.masked_fill(~real, float("-inf"))  # padded keys: exp(-inf) = 0 below
            v = v.masked_fill(~real, 0.0)
        phi_q, phi_k = _stabilised_features(log_q, log_k, params.stabilizer)
        if key_padding_mask is not None:
            phi_k = phi_k * real  # padded keys contribute nothing, not even the eps
        kv = torch.einsum("bhnm,bhnd->bhmd", phi_k, v)  # (B, H, M, D)
        numerator = torch.einsum("bhnm,bhmd->bhnd", phi_q, kv)  # (B, H, N, D)
        denominator = torch.einsum("bhnm,bhm->bhn", phi_q, phi_k.sum(dim=-2))  # (B, H, N)
        out = numerator / denominator.clamp_min(torch.finfo(torch.float32).tiny)[..., None]
    return out.to(out_dtype)


def _stabilised_features(
    log_q: torch.Tensor, log_k: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """exp(log φ - max) + eps for queries and keys; the subtracted maxima cancel in the output.

    Output row i is φ(q_i)ᵀ Σ_j φ(k_j) v_jᵀ / φ(q_i)ᵀ Σ_j φ(k_j). Scaling φ(q_i) by exp(-c_i) (c_i = max
    over query i's features) multiplies numerator and denominator of row i alike; scaling every φ(k_j) of
    one (batch, head) by the same exp(-c) (c = max over all its real keys and features) likewise cancels.
    A per-key max would NOT cancel (it reweights keys), hence the shared key maximum. After the shift the
    largest feature is exactly 1, so nothing overflows; eps keeps the denominator > 0 when others underflow.
    The maxima are detached: they cancel analytically, so their true gradient is zero.
    """
    q_max = log_q.amax(dim=-1, keepdim=True).detach()  # (B, H, N, 1)
    k_max = log_k.amax(dim=(-2, -1), keepdim=True).detach()  # (B, H, 1, 1)
    k_max = torch.where(torch.isfinite(k_max), k_max, torch.zeros_like(k_max))  # all keys padded
    return (log_q - q_max).exp() + eps, (log_k - k_max).exp() + eps


# --- transformers side: adapter and per-layer state -------------------------------------------------

def favor_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """AttentionInterface adapter for FAVOR+. Attention-prob dropout has no FAVOR analogue and is ignored."""
    params = layer_params(module, "favor_projection")
    mask = key_padding_mask(attention_mask, key.shape[-2])
    out = favor_attention(query, key, value, mask, params=params, projection=module.favor_projection, scaling=scaling)
    return out.transpose(1, 2), None  # (B, N, H, D), like HF eager


def attach_projection(module, params: FavorParams, seed: int, layer: int) -> None:
    """Register the step-0 projection of this layer as a persistent buffer (saved with the weights)."""
    projection = layer_projection(params, head_dim(module), seed, layer, step=0)
    module.register_buffer("favor_projection", projection.to(module_device(module)), persistent=True)


def redraw_projection(module, params: FavorParams, step: int) -> bool:
    """Redraw at steps that are multiples of redraw_interval (> 0); in place, so DDP's buffer stays the same."""
    if params.redraw_interval == 0 or step % params.redraw_interval or not hasattr(module, "favor_projection"):
        return False
    fresh = layer_projection(params, head_dim(module), module.raygrid_seed, module.raygrid_layer, step)
    module.favor_projection.copy_(fresh)  # device and dtype kept
    return True


def layer_projection(params: FavorParams, head_dim: int, seed: int, layer: int, step: int) -> torch.Tensor:
    """The projection of (seed, layer, step): every worker and every rerun draws the same one."""
    generator = torch.Generator().manual_seed(derive_seed(seed, layer, step))
    return draw_projection(params.nb_features, head_dim, params.feature_map, params.orthogonal, generator)


def standalone(params: FavorParams, head_dim: int, seed: int = 0):
    """fn(q, k, v, key_padding_mask) over one projection drawn from `seed` (bench)."""
    projection = draw_projection(params.nb_features, head_dim, params.feature_map, params.orthogonal,
                                 torch.Generator().manual_seed(seed))
    return lambda q, k, v, m: favor_attention(q, k, v, m, params=params, projection=projection)
