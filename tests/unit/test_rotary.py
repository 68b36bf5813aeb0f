"""RoPE: relative positions only, norms kept, HF's half-split formulation, dtype and cache behaviour."""
from __future__ import annotations

import pytest
import torch

from raygrid.attention import rotary


def _randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("base", [10000.0, 37.0])
def test_scores_depend_only_on_relative_position(base):
    n, d = 24, 16
    a, b = _randn(2, 3, 1, d, seed=1), _randn(2, 3, 1, d, seed=2)
    # the same query content a at every position and key content b at every position (cos/sin: float32)
    q, k = rotary.apply_rotary(a.expand(2, 3, n, d), b.expand(2, 3, n, d), base)
    scores = q @ k.transpose(-1, -2)  # (B, H, N, N): score of query i and key j
    for shift in (1, 5, 11):
        torch.testing.assert_close(scores[..., shift:, shift:], scores[..., :-shift, :-shift], atol=2e-5, rtol=1e-5)
    assert not torch.allclose(scores[..., 0, 0], scores[..., 0, 3])  # but relative position matters


def test_norm_preserved_and_position_zero_unchanged():
    x = _randn(2, 3, 40, 8, seed=3)
    y = rotary.rotate(x)
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(y[..., 0, :], x[..., 0, :])


def test_half_split_formulation_matches_complex_reference():
    n, d, base = 10, 12, 500.0
    x = _randn(1, 2, n, d, seed=4)
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)  # (D/2,)
    turn = torch.polar(torch.ones(n, d // 2, dtype=torch.float64), torch.arange(n)[:, None] * theta)
    z = torch.complex(x[..., : d // 2], x[..., d // 2 :]) * turn  # pair (x_i, x_{i+D/2}) turned by m·θ_i
    expected = torch.cat([z.real, z.imag], dim=-1)
    torch.testing.assert_close(rotary.rotate(x, base), expected, atol=1e-5, rtol=1e-5)  # cos/sin are float32


def test_matches_transformers_llama_rotary():
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

    config = LlamaConfig(hidden_size=64, num_attention_heads=4, num_key_value_heads=4)  # head_dim 16, θ 10000
    q, k = _randn(2, 4, 9, 16, seed=5, dtype=torch.float32), _randn(2, 4, 9, 16, seed=6, dtype=torch.float32)
    cos, sin = LlamaRotaryEmbedding(config)(q, torch.arange(9)[None].expand(2, 9))
    hf_q, hf_k = apply_rotary_pos_emb(q, k, cos, sin)
    ours_q, ours_k = rotary.apply_rotary(q, k, 10000.0)
    torch.testing.assert_close(ours_q, hf_q)
    torch.testing.assert_close(ours_k, hf_k)


def test_dtype_kept_and_cache_bounded():
    x = _randn(1, 2, 16, 8, seed=7, dtype=torch.float32)
    low = rotary.rotate(x.to(torch.bfloat16))
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), rotary.rotate(x), atol=3e-2, rtol=3e-2)
    assert rotary._cached_tables.cache_info().maxsize == 32
    cos, _ = rotary.rotary_tables(16, 8, 10000.0, x.device, torch.float32)
    assert cos.shape == (16, 8) and cos is rotary.rotary_tables(16, 8, 10000, x.device, torch.float32)[0]
    with pytest.raises(ValueError, match="even head dim"):
        rotary.rotate(torch.zeros(1, 1, 4, 7))


def test_tables_cached_in_inference_mode_still_train():
    with torch.inference_mode():
        rotary.rotate(torch.zeros(1, 1, 13, 6))  # fills the cache for (13, 6) inside inference mode
    x = _randn(1, 1, 13, 6, seed=8, dtype=torch.float32).requires_grad_()
    rotary.rotate(x).pow(2).sum().backward()  # an inference tensor here would fail to be saved for backward
    assert torch.isfinite(x.grad).all()
