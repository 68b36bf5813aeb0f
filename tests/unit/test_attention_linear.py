"""Linear attention (elu+1, Katharopoulos et al. 2020): the same correctness checks as the other kernels."""
from __future__ import annotations

import importlib

import pytest
import torch
from transformers import BertConfig, BertModel

from raygrid.attention import LinearParams, bound, get, hf_bridge
from raygrid.attention.linear import linear_attention


def _qkv(b=2, h=3, n=11, d=8, seed=0, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    return tuple(scale * torch.randn(b, h, n, d, generator=gen) for _ in range(3))


def _reference(q, k, v, mask=None):
    """The direct O(N²) form: weights_ij = φ(q_i)·φ(k_j) over real keys, normalised per query, in float64."""
    phi_q, phi_k = (torch.nn.functional.elu(x.double()) + 1 for x in (q, k))
    weights = torch.einsum("bhnd,bhmd->bhnm", phi_q, phi_k)  # (B, H, N, N)
    if mask is not None:
        weights = weights * mask[:, None, None, :]
    out = (weights / weights.sum(-1, keepdim=True)) @ v.double()
    if mask is not None:
        out = out * mask[:, None, :, None]  # padded queries: zero
    return out


def test_matches_the_quadratic_reference_on_random_inputs():
    for seed, scale in ((0, 1.0), (1, 3.0)):
        q, k, v = _qkv(seed=seed, scale=scale)
        mask = torch.ones(2, 11, dtype=torch.bool)
        mask[1, 6:] = False
        torch.testing.assert_close(linear_attention(q, k, v, mask).double(), _reference(q, k, v, mask),
                                   atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(linear_attention(q, k, v).double(), _reference(q, k, v), atol=1e-5, rtol=1e-5)


def test_padded_keys_change_nothing_and_padded_queries_are_zero():
    q, k, v = _qkv(b=1, n=9)
    mask = torch.ones(1, 13, dtype=torch.bool)
    mask[:, 9:] = False
    filler = [torch.randn(1, 3, 4, 8, generator=torch.Generator().manual_seed(s)) for s in (1, 2, 3)]
    padded = [torch.cat([t, 100 * f], dim=2) for t, f in zip((q, k, v), filler)]
    out = linear_attention(*padded, mask)
    torch.testing.assert_close(out[:, :, :9], linear_attention(q, k, v), atol=1e-5, rtol=1e-5)
    assert out[:, :, 9:].abs().max() == 0
    other = [p.clone() for p in padded]
    other[1][:, :, 9:] = float("inf")  # even non-finite padded keys and values are never read
    other[2][:, :, 9:] = float("nan")
    torch.testing.assert_close(linear_attention(*other, mask), out, atol=0, rtol=0)


def test_shape_dtype_and_value_width():
    q, k, _ = _qkv(n=7, d=8)
    v = torch.randn(2, 3, 7, 5)  # value width E may differ from D
    assert linear_attention(q, k, v).shape == (2, 3, 7, 5)
    out = linear_attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
    assert out.dtype == torch.bfloat16 and out.shape == (2, 3, 7, 5)
    torch.testing.assert_close(out.float(), linear_attention(q, k, v), atol=3e-2, rtol=3e-2)


def test_gradients_flow_to_q_k_v_and_not_from_padding():
    q, k, v = (t.requires_grad_(True) for t in _qkv(n=10))
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[0, 7:] = False
    linear_attention(q, k, v, mask, params=LinearParams()).pow(2).sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    assert k.grad[0, :, 7:].abs().max() == 0 and v.grad[0, :, 7:].abs().max() == 0  # padded keys: no gradient


def test_each_query_reads_only_the_key_summaries():
    # The (D, E) state per head does not grow with N: outputs for N tokens need only Σφ(k)vᵀ and Σφ(k).
    q, k, v = _qkv(b=1, h=1, n=64)
    full = linear_attention(q, k, v)
    first, second = linear_attention(q[:, :, :1], k, v), linear_attention(q[:, :, 1:2], k, v)
    torch.testing.assert_close(torch.cat([first, second], dim=2), full[:, :, :2])


def _tiny_bert(params, max_len=64):
    config = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=37, max_position_embeddings=max_len,
                        attn_implementation=hf_bridge.implementation_name(params))
    torch.manual_seed(0)
    model = BertModel(config).eval()
    bound.attach_attention_state(model, params, seed=0)
    return model


def test_runs_through_transformers_attention_interface_in_a_tiny_bert(monkeypatch):
    params = LinearParams()
    assert hf_bridge.implementation_name(params) == "raygrid_linear"
    assert hf_bridge.implementation_name(params, rope=True) == "raygrid_rope_linear"
    record = get("linear")
    module = importlib.import_module(record.kernel_module)
    kernel, calls = getattr(module, record.kernel), []
    monkeypatch.setattr(module, record.kernel, lambda q, k, v, m, **kw: calls.append(m) or kernel(q, k, v, m, **kw))
    model = _tiny_bert(params)
    ids = torch.randint(1, 99, (2, 13), generator=torch.Generator().manual_seed(0))
    short = model(ids[:, :9], attention_mask=torch.ones(2, 9)).last_hidden_state
    assert len(calls) == 2  # one call per layer: HF ran raygrid's adapter, not its own attention
    padded_ids = torch.cat([ids[:, :9], torch.zeros(2, 4, dtype=torch.long)], dim=1)
    long = model(padded_ids, attention_mask=(torch.arange(13) < 9).long().expand(2, 13)).last_hidden_state
    assert calls[-1].shape == (2, 13) and not calls[-1][:, 9:].any()  # the padding mask reached the kernel
    torch.testing.assert_close(long[:, :9], short, atol=1e-5, rtol=1e-5)
    model(ids)  # no mask: the adapter accepts None
    assert calls[-1] is None
    model.train()
    model(ids, attention_mask=torch.ones(2, 13)).last_hidden_state.pow(2).mean().backward()
    grad = model.encoder.layer[0].attention.self.query.weight.grad
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_has_no_state_to_attach_save_or_count():
    model = _tiny_bert(LinearParams())
    attention = bound.attach_attention_state(model, LinearParams(), seed=0)
    assert attention.layer_state_tensors() == {} and len(attention.layers) == 2
    assert attention.forward_count is None and attention.on_step is None


def test_params_reject_unknown_keys_and_bad_eps():
    with pytest.raises(ValueError):
        LinearParams(eps=0)
    with pytest.raises(ValueError):
        LinearParams(feature_map="relu")
