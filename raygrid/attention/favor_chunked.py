"""FAVOR+ without its (B, H, N, M) feature tensors: chunks over N, features recomputed in backward.

The readable formula (raygrid.attention.favor.favor_attention_dense) keeps log φ(q), log φ(k), their
shifted copies, φ(q), φ(k) and autograd's saved copies alive at once: about seven (B, H, N, M) float32
tensors (233 MiB for one 4k-token sequence, 8 heads, M = 256: BENCHMARKS.md). Here none exists: features
are built chunk by chunk (at most `_CHUNK_ELEMENTS` values per chunk), reduced at once into the
(B, H, M, D) sums S = Σ_j φ(k_j) v_jᵀ and z = Σ_j φ(k_j), and rebuilt in backward from the saved
q, k, v, S and z (the gradient below is written out, so nothing of size N·M is saved).

Per (batch, head), with x' = x·d^-1/4, ℓ(x) = Ω x' - ‖x'‖²/2 (Ω: the M rows ω, or [ω; -ω] for φ*),
and the shared stabiliser of the dense formula (c_k: the max of ℓ over all real keys and features,
c_q(i): the max over query i's features, both constants for autograd: they cancel in the output):
    φ(k_j) = (exp(ℓ(k_j) - c_k) + eps) · real_j        φ(q_i) = exp(ℓ(q_i) - c_q(i)) + eps
    out_i  = φ(q_i)ᵀ S / φ(q_i)ᵀ z
Backward, g_i = ∂L/∂out_i, den_i = φ(q_i)ᵀ z:
    ∂φ(q_i) = S g_i / den_i - z (g_i·out_i) / den_i          ∂S = Σ_i φ(q_i) g_iᵀ / den_i
    ∂z = -Σ_i φ(q_i) (g_i·out_i) / den_i                      ∂φ(k_j) = ∂S v_j + ∂z,  ∂v_j = ∂Sᵀ φ(k_j)
    ∂ℓ = ∂φ ⊙ exp(ℓ - c) (0 for padded keys)                  ∂x' = ∂ℓ Ω - (Σ_m ∂ℓ_m) x'
All in float32 (the caller turns autocast off; bf16 inputs are cast chunk by chunk): exponents
ωᵀx - ‖x‖²/2 need more digits than bf16 has. The projection gets no gradient (it is state, not a weight).
"""
from __future__ import annotations

import torch

# Feature values per (B, H, chunk, M) buffer (float32: 64 MiB on CUDA, 4 MiB on CPU); a few live at once.
# Larger on CUDA, where each chunk costs a dozen kernel launches.
_CHUNK_ELEMENTS = {"cuda": 1 << 24, "cpu": 1 << 20}
_TINY = torch.finfo(torch.float32).tiny


def chunked_favor(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, real: torch.Tensor | None,
                  omegas: torch.Tensor, root: float, eps: float, chunk_rows: int | None = None) -> torch.Tensor:
    """FAVOR+ output (B, H, N, D) float32; q, k, v (B, H, N, D) in any float dtype, cast chunk by chunk.

    real: (B, N) bool or None; omegas (M, D) float32, one row per feature column (φ*: [ω; -ω]); root: the
    factor of q and k (d^-1/4, or √scaling). chunk_rows: tokens per chunk (default: as many as fit
    `_CHUNK_ELEMENTS` feature values). Padded keys and values never enter the sums, whatever they hold.
    """
    batch, heads, n, _ = q.shape
    if chunk_rows is None:
        budget = _CHUNK_ELEMENTS.get(q.device.type, _CHUNK_ELEMENTS["cpu"])
        chunk_rows = max(1, budget // (batch * heads * omegas.shape[0]))
    padded = None if real is None else ~real.to(torch.bool)[:, None, :, None]  # (B, 1, N, 1)
    return _ChunkedFavor.apply(q, k, v, padded, omegas, root, eps, min(chunk_rows, n))


class _ChunkedFavor(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, padded, omegas, root, eps, rows):
        k_max = _key_max(k, padded, omegas, root, rows)  # (B, H, 1, 1)
        sums = _key_sums(k, v, padded, omegas, root, eps, rows, k_max)  # S (B, H, M, D), z (B, H, M)
        out = q.new_empty(q.shape, dtype=torch.float32)
        for part in _chunks(q.shape[-2], rows):
            phi = _query_features(_scaled(q, part, root), omegas, eps)[1]  # (B, H, c, M)
            out[..., part, :] = _ratio(phi, *sums)[0]
        ctx.save_for_backward(q, k, v, padded, omegas, k_max, *sums)
        ctx.root, ctx.eps, ctx.rows = root, eps, rows
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, padded, omegas, k_max, s, z = ctx.saved_tensors
        root, eps, rows = ctx.root, ctx.eps, ctx.rows
        grad_q, grad_s, grad_z = torch.empty_like(q), torch.zeros_like(s), torch.zeros_like(z)
        for part in _chunks(q.shape[-2], rows):
            x = _scaled(q, part, root)  # (B, H, c, D) float32
            shifted, phi = _query_features(x, omegas, eps)  # exp(ℓ - c), φ: (B, H, c, M)
            out, den = _ratio(phi, s, z)
            g = grad_out[..., part, :] / den[..., None]  # (B, H, c, D)
            g_den = -(g * out).sum(dim=-1) * (den >= _TINY)  # (B, H, c); clamp_min's gradient rule
            grad_s += torch.einsum("bhcm,bhcd->bhmd", phi, g)
            grad_z += torch.einsum("bhcm,bhc->bhm", phi, g_den)
            d_phi = torch.einsum("bhcd,bhmd->bhcm", g, s).addcmul_(g_den[..., None], z[:, :, None, :])
            grad_q[..., part, :] = _input_grad(d_phi.mul_(shifted), x, omegas) * root
        grad_k, grad_v = torch.empty_like(k), torch.empty_like(v)
        for part in _chunks(k.shape[-2], rows):
            x, mask = _scaled(k, part, root), _part(padded, part)
            shifted, phi = _key_features(x, mask, omegas, eps, k_max)
            grad_v[..., part, :] = torch.einsum("bhcm,bhmd->bhcd", phi, grad_s)  # 0 at padded keys (φ = 0)
            d_phi = torch.einsum("bhcd,bhmd->bhcm", _values(v, part, mask), grad_s).add_(grad_z[:, :, None, :])
            grad_k[..., part, :] = _input_grad(d_phi.mul_(shifted), x, omegas) * root
        return grad_q, grad_k, grad_v, None, None, None, None, None


def _chunks(n: int, rows: int):
    return [slice(start, min(start + rows, n)) for start in range(0, n, rows)]


def _part(padded: torch.Tensor | None, part: slice) -> torch.Tensor | None:
    return None if padded is None else padded[:, :, part]


def _scaled(x: torch.Tensor, part: slice, root: float) -> torch.Tensor:
    """x' = x·root for one chunk of tokens, float32 (B, H, c, D)."""
    return x[..., part, :].float() * root


def _values(v: torch.Tensor, part: slice, padded: torch.Tensor | None) -> torch.Tensor:
    """One chunk of values in float32, padded ones 0 (0 · inf/nan must stay out of the sums)."""
    chunk = v[..., part, :].float()
    return chunk if padded is None else chunk.masked_fill(padded, 0.0)


def _log_features(x: torch.Tensor, omegas: torch.Tensor) -> torch.Tensor:
    """ℓ(x) = Ω x - ‖x‖²/2 (the 1/√M factor cancels in the stabiliser); x (B, H, c, D) -> (B, H, c, M)."""
    return (x @ omegas.T).sub_(x.pow(2).sum(dim=-1, keepdim=True) / 2)


def _key_max(k, padded, omegas, root: float, rows: int) -> torch.Tensor:
    """c_k: max of ℓ over the real keys and features of each (batch, head), (B, H, 1, 1); 0 if none is real."""
    k_max = None
    for part in _chunks(k.shape[-2], rows):
        log_k = _log_features(_scaled(k, part, root), omegas)
        if padded is not None:
            log_k.masked_fill_(_part(padded, part), float("-inf"))
        top = log_k.amax(dim=(-2, -1), keepdim=True)
        k_max = top if k_max is None else torch.maximum(k_max, top)
    return torch.where(torch.isfinite(k_max), k_max, torch.zeros_like(k_max))


def _key_features(k, padded, omegas, eps: float, k_max):
    """(exp(ℓ - c_k), φ(k)) for a chunk of keys, both 0 at padded keys (whatever those hold)."""
    shifted = _log_features(k, omegas).sub_(k_max).exp_()
    if padded is None:
        return shifted, shifted + eps
    shifted.masked_fill_(padded, 0.0)
    return shifted, (shifted + eps).masked_fill_(padded, 0.0)


def _key_sums(k, v, padded, omegas, root: float, eps: float, rows: int, k_max):
    """S = Σ_j φ(k_j) v_jᵀ (B, H, M, D) and z = Σ_j φ(k_j) (B, H, M), chunk by chunk."""
    batch, heads, _, dim = k.shape
    s = k.new_zeros(batch, heads, omegas.shape[0], dim, dtype=torch.float32)
    z = k.new_zeros(batch, heads, omegas.shape[0], dtype=torch.float32)
    for part in _chunks(k.shape[-2], rows):
        mask = _part(padded, part)
        phi = _key_features(_scaled(k, part, root), mask, omegas, eps, k_max)[1]
        s += torch.einsum("bhcm,bhcd->bhmd", phi, _values(v, part, mask))
        z += phi.sum(dim=-2)
    return s, z


def _query_features(q, omegas, eps: float):
    """(exp(ℓ - c_q), φ(q)) for a chunk of queries; c_q = each query's own max over its features."""
    shifted = _log_features(q, omegas)
    shifted = shifted.sub_(shifted.amax(dim=-1, keepdim=True)).exp_()
    return shifted, shifted + eps


def _ratio(phi, s, z):
    """(out, den): φ(q)ᵀS / max(φ(q)ᵀz, tiny) and φ(q)ᵀz for a chunk of queries."""
    den = torch.einsum("bhcm,bhm->bhc", phi, z)
    return torch.einsum("bhcm,bhmd->bhcd", phi, s) / den.clamp_min(_TINY)[..., None], den


def _input_grad(d_log: torch.Tensor, x: torch.Tensor, omegas: torch.Tensor) -> torch.Tensor:
    """∂x' from ∂ℓ (B, H, c, M): ∂ℓ Ω - (Σ_m ∂ℓ_m) x'."""
    return d_log @ omegas - d_log.sum(dim=-1, keepdim=True) * x
