"""HF integration: the registered functions are really called, get the padding mask, keep state per layer."""
from __future__ import annotations

import importlib

import pytest
import torch
from transformers import AutoModel, BertConfig, BertModel
from transformers.masking_utils import eager_mask, sdpa_mask

from raygrid.attention import FavorParams, LshParams, SoftmaxParams, bound, get, hf_bridge, records
from raygrid.model.positions import disable_learned_positions

# Every registered variant but the reference (HF's own sdpa), at settings that suit 13-token inputs.
TINY = {"favor": {"nb_features": 32}, "lsh": {"chunk_size": 4, "num_hashes": 2}}
VARIANTS = [record.params(**TINY.get(record.kind, {})) for record in records() if not record.reference]


def _config(name: str, max_len: int = 64) -> BertConfig:
    return BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                      max_position_embeddings=max_len, attn_implementation=name)


def _model(params, seed=0, max_len=64) -> BertModel:
    return _bound(params, seed, max_len)[0]


def _bound(params, seed=0, max_len=64) -> tuple[BertModel, bound.BoundAttention]:
    torch.manual_seed(0)
    model = BertModel(_config(hf_bridge.implementation_name(params), max_len)).eval()
    return model, bound.attach_attention_state(model, params, seed)


def _spy(monkeypatch, kind):
    """Record the mask of every call of `kind`'s kernel, patched where the record's adapter looks it up."""
    calls = []
    record = get(kind)
    module = importlib.import_module(record.kernel_module)
    kernel = getattr(module, record.kernel)

    def spy(q, k, v, mask, **kwargs):
        calls.append(mask)
        return kernel(q, k, v, mask, **kwargs)

    monkeypatch.setattr(module, record.kernel, spy)
    return calls


def test_implementation_names():
    assert hf_bridge.implementation_name(SoftmaxParams()) == "sdpa"
    assert hf_bridge.implementation_name({"kind": "softmax", "implementation": "eager"}) == "eager"
    assert hf_bridge.implementation_name(FavorParams()) == "raygrid_favor"
    assert hf_bridge.implementation_name(LshParams()) == "raygrid_lsh"
    assert hf_bridge.implementation_name(SoftmaxParams(), rope=True) == "raygrid_rope_softmax"
    assert hf_bridge.implementation_name({"kind": "softmax", "implementation": "eager"}, rope=True) == \
        "raygrid_rope_softmax"
    assert hf_bridge.implementation_name(FavorParams(), rope=True) == "raygrid_rope_favor"
    assert hf_bridge.implementation_name(LshParams(), rope=True) == "raygrid_rope_lsh"


@pytest.mark.parametrize("params", VARIANTS, ids=[params.kind for params in VARIANTS])
def test_kernel_called_with_mask_and_padding_invariant(params, monkeypatch):
    calls = _spy(monkeypatch, params.kind)
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


def test_redraws_follow_the_schedule_and_params_without_redraws_get_no_step_hook():
    params = FavorParams(nb_features=16, redraw_interval=5)
    model, attention = _bound(params, seed=4)
    before = model.encoder.layer[0].attention.self.favor_projection.clone()
    assert not attention.on_step(5)  # eval mode
    model.train()
    assert not attention.on_step(0) and not attention.on_step(7)
    assert torch.equal(before, model.encoder.layer[0].attention.self.favor_projection)
    assert attention.on_step(10)
    after = model.encoder.layer[0].attention.self.favor_projection
    assert not torch.equal(before, after)
    twin, twin_attention = _bound(params, seed=4)
    twin.train()
    twin_attention.on_step(10)
    assert torch.equal(after, twin.encoder.layer[0].attention.self.favor_projection)
    # fixed features (and every variant without redraws): no hook, so the loop never walks the layers
    assert _bound(params.model_copy(update={"redraw_interval": 0}))[1].on_step is None
    assert all(_bound(p)[1].on_step is None for p in VARIANTS)


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
    bound.attach_attention_state(model, params, seed=0)
    assert len(hf_bridge.attention_modules(model)) == 2
    assert torch.isfinite(model(torch.randint(1, 99, (1, 8))).last_hidden_state).all()


LONG = [params.model_copy(update={"chunk_size": 64}) if params.kind == "lsh" else params for params in VARIANTS]


@pytest.mark.parametrize("params", LONG, ids=[params.kind for params in LONG])
def test_whole_model_4096_tokens_forward_backward(params):
    model = _model(params, max_len=4096).train()
    ids = torch.randint(1, 99, (1, 4096), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(1, 4096, dtype=torch.long)
    mask[:, 4000:] = 0
    hidden = model(ids, attention_mask=mask).last_hidden_state
    hidden[:, :4000].pow(2).mean().backward()
    grad = model.encoder.layer[0].attention.self.query.weight.grad
    assert torch.isfinite(hidden).all() and torch.isfinite(grad).all() and grad.abs().sum() > 0


# --- rotary positions ------------------------------------------------------------------------------

ROPE_VARIANTS = [SoftmaxParams(), *VARIANTS]  # every registered variant behind rotary positions


def _rope_model(checkpoint, params, seed=0):
    name = hf_bridge.implementation_name(params, rope=True)
    model = AutoModel.from_pretrained(checkpoint, attn_implementation=name).eval()
    disable_learned_positions(model)
    bound.attach_attention_state(model, params, seed, rope_base=10000.0)
    with torch.no_grad():  # random init (std 0.02) gives near-uniform attention: sharpen it so positions show
        for module in hf_bridge.attention_modules(model):
            module.query.weight.mul_(8)
            module.key.weight.mul_(8)
    return model


@pytest.mark.parametrize("params", ROPE_VARIANTS, ids=[params.kind for params in ROPE_VARIANTS])
def test_rope_whole_model(tiny_checkpoint, params, monkeypatch):
    calls = _spy(monkeypatch, params.kind)
    model = _rope_model(tiny_checkpoint, params)
    ids = torch.randint(5, 60, (2, 16), generator=torch.Generator().manual_seed(0))
    out = model(ids, attention_mask=torch.ones(2, 16)).last_hidden_state
    assert len(calls) == 2 and torch.isfinite(out).all()
    # right padding leaves the real tokens' positions (0 … n-1) and outputs unchanged
    padded = torch.cat([ids, torch.zeros(2, 8, dtype=torch.long)], dim=1)
    long = model(padded, attention_mask=(torch.arange(24) < 16).long().expand(2, 24)).last_hidden_state
    torch.testing.assert_close(long[:, :16], out, atol=1e-5, rtol=1e-5)
    # the learned table is gone, yet token order matters: positions come from RoPE
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(1))
    shuffled = model(ids[:, perm], attention_mask=torch.ones(2, 16)).last_hidden_state
    assert (shuffled - out[:, perm]).abs().max() > 1e-3  # without positions: < 1e-6 (test_positions)
    model.train()
    model(ids, attention_mask=torch.ones(2, 16)).last_hidden_state.pow(2).mean().backward()
    grad = model.encoder.layer[0].attention.self.query.weight.grad
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_rope_state_checks(tiny_checkpoint):
    params = SoftmaxParams()
    model = AutoModel.from_pretrained(tiny_checkpoint, attn_implementation=hf_bridge.implementation_name(params, True))
    with pytest.raises(RuntimeError, match="rope_base"):
        model(torch.randint(5, 60, (1, 8)))
    with pytest.raises(ValueError, match="pass rope_base"):
        bound.attach_attention_state(model, params, seed=0)
    plain = AutoModel.from_pretrained(tiny_checkpoint, attn_implementation="sdpa")
    with pytest.raises(ValueError, match="ignores it"):
        bound.attach_attention_state(plain, params, seed=0, rope_base=10000.0)
    with pytest.raises(ValueError, match="raygrid_favor but the attention params need sdpa"):
        bound.attach_attention_state(_model(FavorParams(nb_features=16)), params, seed=0)
    with pytest.raises(ValueError, match="need raygrid_rope_lsh"):
        bound.attach_attention_state(model, LshParams(), seed=0, rope_base=500)
    bound.attach_attention_state(model, params, seed=0, rope_base=500)
    assert {m.raygrid_rope_base for m in hf_bridge.attention_modules(model)} == {500.0}


# --- LSH hashing per top-level forward (gradient checkpointing) ----------------------------------

def test_lsh_gradient_checkpointing_gives_same_gradients(monkeypatch):
    calls = _spy(monkeypatch, "lsh")
    params = LshParams(chunk_size=4, num_hashes=2)
    ids = torch.randint(1, 99, (2, 24), generator=torch.Generator().manual_seed(2))
    mask = (torch.arange(24) < torch.tensor([[24], [19]])).long()

    def gradients(checkpointing: bool) -> dict:
        model, attention = _bound(params, seed=5)
        model.train()
        if checkpointing:
            model.gradient_checkpointing_enable()
        attention.set_forward_count(7)
        torch.manual_seed(1)  # dropout masks (checkpointing replays the global RNG itself)
        model(ids, attention_mask=mask).last_hidden_state.pow(2).mean().backward()
        return {name: p.grad for name, p in model.named_parameters() if p.grad is not None}

    plain = gradients(False)
    assert len(calls) == 2
    checkpointed = gradients(True)
    assert len(calls) == 2 + 4  # each layer ran again in backward, and hashed as in its forward
    assert plain.keys() == checkpointed.keys() and len(plain) > 10
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, msg=name)


def test_lsh_counter_ticks_per_training_forward_and_resumes():
    import copy

    params = LshParams(chunk_size=4, num_hashes=1)
    ids = torch.randint(1, 99, (1, 32), generator=torch.Generator().manual_seed(1))
    model, attention = _bound(params, seed=3)
    model(ids)
    assert attention.forward_count == 0  # eval forwards do not tick
    model.train()
    for _ in range(3):
        model(ids)
    assert attention.forward_count == 3  # once per top-level forward, not per layer
    twin, twin_attention = copy.deepcopy((model, attention))
    twin(ids)
    assert twin_attention.forward_count == 4 and attention.forward_count == 3  # copies keep their own counter
    saved = attention.checkpoint_state()
    assert saved == {"attention_forwards": 3}
    torch.manual_seed(0)
    fourth = model(ids).last_hidden_state
    resumed, resumed_attention = _bound(params, seed=3)
    resumed.train()
    resumed_attention.load_checkpoint_state(saved)
    torch.manual_seed(0)
    torch.testing.assert_close(resumed(ids).last_hidden_state, fourth, rtol=0, atol=0)
    older, older_attention = _bound(params, seed=3)
    older_attention.load_checkpoint_state({"lsh_step": 3})  # checkpoints from before `attention_forwards`
    assert older_attention.forward_count == 3
    favor = _bound(FavorParams(nb_features=16))[1]
    favor.load_checkpoint_state({"attention_forwards": 3})
    assert favor.forward_count is None and favor.checkpoint_state() == {"attention_forwards": None}


def test_a_bound_attention_pickles_with_its_model_by_its_records_kind():
    import pickle

    model, attention = _bound(LshParams(chunk_size=4, num_hashes=1), seed=3)
    copy_model, copy_attention = pickle.loads(pickle.dumps((model, attention)))
    assert copy_attention.record is attention.record and copy_attention.params == attention.params
    assert copy_attention.layers == hf_bridge.attention_modules(copy_model)  # the copy's own layers
    copy_model.train()
    copy_model(torch.randint(1, 99, (1, 16)))
    assert copy_attention.forward_count == 1 and attention.forward_count == 0
