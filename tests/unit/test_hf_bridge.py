"""HF integration: the registered functions are really called, get the padding mask, keep state per layer."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoModel, BertConfig, BertModel
from transformers.masking_utils import eager_mask, sdpa_mask

from raygrid.attention import FavorParams, LshParams, SoftmaxParams, hf_bridge

VARIANTS = [FavorParams(nb_features=32), LshParams(chunk_size=4, num_hashes=2)]


def _config(name: str, max_len: int = 64) -> BertConfig:
    return BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                      max_position_embeddings=max_len, attn_implementation=name)


def _model(params, seed=0, max_len=64) -> BertModel:
    torch.manual_seed(0)
    model = BertModel(_config(hf_bridge.implementation_name(params), max_len)).eval()
    hf_bridge.attach_attention_state(model, params, seed)
    return model


def _spy(monkeypatch, attribute):
    calls = []
    kernel = getattr(hf_bridge, attribute)

    def spy(q, k, v, mask, **kwargs):
        calls.append(mask)
        return kernel(q, k, v, mask, **kwargs)

    monkeypatch.setattr(hf_bridge, attribute, spy)
    return calls


def test_implementation_names():
    assert hf_bridge.implementation_name(SoftmaxParams()) == "sdpa"
    assert hf_bridge.implementation_name({"kind": "softmax", "implementation": "eager"}) == "eager"
    assert hf_bridge.implementation_name(FavorParams()) == "raygrid_favor"
    assert hf_bridge.implementation_name(LshParams()) == "raygrid_lsh"


@pytest.mark.parametrize("params", VARIANTS, ids=["favor", "lsh"])
def test_kernel_called_with_mask_and_padding_invariant(params, monkeypatch):
    calls = _spy(monkeypatch, "favor_attention" if params.kind == "favor" else "lsh_attention")
    model = _model(params)
    ids = torch.randint(1, 99, (2, 13), generator=torch.Generator().manual_seed(0))
    short = model(ids[:, :9], attention_mask=torch.ones(2, 9)).last_hidden_state
    assert len(calls) == 2  # one per layer
    padded_ids = torch.cat([ids[:, :9], torch.zeros(2, 4, dtype=torch.long)], dim=1)
    mask = (torch.arange(13) < 9).long().expand(2, 13)
    long = model(padded_ids, attention_mask=mask).last_hidden_state
    assert calls[-1].shape == (2, 13) and not calls[-1][:, 9:].any()  # HF passed the padding through
    torch.testing.assert_close(long[:, :9], short, atol=1e-5, rtol=1e-5)
    model(ids)  # no mask at all: the adapter accepts None
    assert calls[-1] is None


def test_state_per_layer_deterministic_and_checkpointed():
    params = FavorParams(nb_features=16, feature_map="positive")
    a, b, c = _model(params, seed=1), _model(params, seed=1), _model(params, seed=2)
    keys = [key for key in a.state_dict() if key.endswith("favor_projection")]
    assert len(keys) == 2 and a.state_dict()[keys[0]].shape == (16, 8)
    assert not torch.equal(a.state_dict()[keys[0]], a.state_dict()[keys[1]])  # seeded per layer
    assert all(torch.equal(a.state_dict()[key], b.state_dict()[key]) for key in keys)
    assert not torch.equal(a.state_dict()[keys[0]], c.state_dict()[keys[0]])
    lsh = _model(LshParams(), seed=1)
    seeds = [module.raygrid_lsh_seed for module in hf_bridge.attention_modules(lsh)]
    assert len(set(seeds)) == 2


def test_lsh_eval_is_reproducible_training_rehashes():
    model = _model(LshParams(chunk_size=4, num_hashes=1), seed=3)
    ids = torch.randint(1, 99, (1, 32), generator=torch.Generator().manual_seed(1))
    first, second = model(ids).last_hidden_state, model(ids).last_hidden_state
    assert torch.equal(first, second)
    model.train()
    model.config.hidden_dropout_prob = 0.0
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    assert not torch.equal(model(ids).last_hidden_state, model(ids).last_hidden_state)


def test_maybe_redraw_schedule():
    params = FavorParams(nb_features=16, redraw_interval=5)
    model = _model(params, seed=4)
    before = model.encoder.layer[0].attention.self.favor_projection.clone()
    assert not hf_bridge.maybe_redraw(model, params, 5)  # eval mode
    model.train()
    assert not hf_bridge.maybe_redraw(model, params, 0) and not hf_bridge.maybe_redraw(model, params, 7)
    assert torch.equal(before, model.encoder.layer[0].attention.self.favor_projection)
    assert hf_bridge.maybe_redraw(model, params, 10)
    after = model.encoder.layer[0].attention.self.favor_projection
    assert not torch.equal(before, after)
    twin = _model(params, seed=4).train()
    hf_bridge.maybe_redraw(twin, params, 10)
    assert torch.equal(after, twin.encoder.layer[0].attention.self.favor_projection)
    assert not hf_bridge.maybe_redraw(model, params.model_copy(update={"redraw_interval": 0}), 10)


def test_key_padding_mask_conversion():
    real = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    bool4d = sdpa_mask(batch_size=2, q_length=4, kv_length=4, mask_function=lambda b, h, q, k: q >= 0,
                       attention_mask=real)
    float4d = eager_mask(batch_size=2, q_length=4, kv_length=4, mask_function=lambda b, h, q, k: q >= 0,
                         attention_mask=real, dtype=torch.float32)
    assert bool4d.shape == (2, 1, 4, 4) and float4d.dtype == torch.float32
    for mask in (real, real.long(), bool4d, float4d, hf_bridge.padding_only_mask(2, 4, 4, attention_mask=real)):
        assert torch.equal(hf_bridge.key_padding_mask(mask, 4), real)
    assert hf_bridge.key_padding_mask(None, 4) is None


def test_pretrained_folder_and_missing_state(tmp_path):
    torch.manual_seed(0)
    BertModel(_config("sdpa"), add_pooling_layer=False).save_pretrained(tmp_path)
    params = LshParams(chunk_size=4)
    model = AutoModel.from_pretrained(tmp_path, attn_implementation=hf_bridge.implementation_name(params))
    with pytest.raises(RuntimeError, match="attach_attention_state"):
        model(torch.randint(1, 99, (1, 8)))
    hf_bridge.attach_attention_state(model, params, seed=0)
    assert len(hf_bridge.attention_modules(model)) == 2
    assert torch.isfinite(model(torch.randint(1, 99, (1, 8))).last_hidden_state).all()


@pytest.mark.parametrize("params", [FavorParams(nb_features=32), LshParams(chunk_size=64, num_hashes=2)],
                         ids=["favor", "lsh"])
def test_whole_model_4096_tokens_forward_backward(params):
    model = _model(params, max_len=4096).train()
    ids = torch.randint(1, 99, (1, 4096), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(1, 4096, dtype=torch.long)
    mask[:, 4000:] = 0
    hidden = model(ids, attention_mask=mask).last_hidden_state
    hidden[:, :4000].pow(2).mean().backward()
    grad = model.encoder.layer[0].attention.self.query.weight.grad
    assert torch.isfinite(hidden).all() and torch.isfinite(grad).all() and grad.abs().sum() > 0
