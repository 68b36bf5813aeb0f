"""Pooling math, the N_freeze schedule and the classifier head, on a tiny random BERT."""
import pytest
import torch

from raygrid.spec.config import CellConfig
from raygrid.model.encoder import (build_classifier, check_max_len, cls_pool, encoder_blocks, frozen_epochs, mean_pool,
                           set_bottom_frozen)
from raygrid.model.positions import position_offset


def cell(checkpoint, **model):
    return CellConfig.model_validate({"data": {"dataset": "local", "path": "/x", "max_len": 64},
                                      "model": {"checkpoint": str(checkpoint), **model}})


def test_mean_pool_ignores_padding():
    hidden = torch.randn(2, 5, 3)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    pooled = mean_pool(hidden, mask)
    assert torch.allclose(pooled[0], hidden[0, :3].mean(0))
    assert torch.allclose(pooled[1], hidden[1].mean(0))
    garbage = hidden.clone()
    garbage[0, 3:] = 1e6  # whatever sits on padded positions must not leak in
    assert torch.allclose(mean_pool(garbage, mask), pooled)


def test_cls_pool_takes_first_token():
    hidden = torch.randn(2, 4, 3)
    assert torch.equal(cls_pool(hidden, torch.ones(2, 4)), hidden[:, 0])


@pytest.mark.parametrize("head", ["linear", "pooler"])
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_classifier_logits_are_padding_invariant(tiny_checkpoint, pooling, head):
    model = build_classifier(cell(tiny_checkpoint, pooling=pooling, head=head), num_labels=3).eval()
    ids = torch.randint(5, 60, (1, 10))
    short = model(ids, torch.ones_like(ids))
    padded_ids = torch.cat([ids, torch.zeros(1, 6, dtype=torch.long)], 1)
    mask = torch.cat([torch.ones(1, 10), torch.zeros(1, 6)], 1).long()
    assert short.shape == (1, 3)
    assert torch.allclose(model(padded_ids, mask), short, atol=1e-5)


def test_head_dropout_is_p_drop(tiny_checkpoint):
    model = build_classifier(cell(tiny_checkpoint, p_drop=0.3), num_labels=2)
    assert model.dropout.p == 0.3


def test_the_pooler_head_is_the_studys(tiny_checkpoint):
    model = build_classifier(cell(tiny_checkpoint, pooling="mean", head="pooler", p_drop=0.2), num_labels=3).eval()
    dense, tanh = model.pooler
    assert isinstance(dense, torch.nn.Linear) and isinstance(tanh, torch.nn.Tanh) and model.dropout.p == 0.2
    assert (dense.in_features, dense.out_features, model.head.out_features) == (32, 32, 3)
    for layer in (dense, model.head):  # Xavier uniform: U(-a, a), a = sqrt(6 / (fan_in + fan_out)); zero bias
        bound = (6 / (layer.in_features + layer.out_features)) ** 0.5
        assert layer.weight.abs().max() <= bound and torch.count_nonzero(layer.bias) == 0
    assert dense.weight.std().item() == pytest.approx(((6 / 64) ** 0.5) / 3 ** 0.5, rel=0.15)
    ids = torch.randint(5, 60, (2, 9))
    mask = torch.ones_like(ids)
    hidden = model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    expected = model.head(torch.tanh(dense(mean_pool(hidden, mask))))  # eval: dropout is the identity
    assert torch.allclose(model(ids, mask), expected, atol=1e-6)


def test_the_linear_head_has_no_pooler(tiny_checkpoint):
    model = build_classifier(cell(tiny_checkpoint), num_labels=2)
    assert isinstance(model.pooler, torch.nn.Identity) and not list(model.pooler.parameters())


def test_a_checkpoints_own_pooler_is_not_reused(tiny_checkpoint, tmp_path):
    from transformers import BertConfig, BertModel

    config = BertConfig.from_pretrained(tiny_checkpoint)
    torch.manual_seed(5)
    BertModel(config, add_pooling_layer=True).save_pretrained(tmp_path / "with_pooler")
    saved = BertModel.from_pretrained(tmp_path / "with_pooler").pooler.dense.weight
    model = build_classifier(cell(tmp_path / "with_pooler", head="pooler"), num_labels=2)
    assert not any(name.startswith("pooler") for name, _ in model.encoder.named_parameters())
    assert not torch.allclose(model.pooler[0].weight, saved)  # a fresh, seeded Xavier pooler instead
    again = build_classifier(cell(tmp_path / "with_pooler", head="pooler"), num_labels=2)
    assert torch.equal(model.pooler[0].weight, again.pooler[0].weight)


def test_same_seed_same_init(tiny_checkpoint):
    a = build_classifier(cell(tiny_checkpoint), 2)
    b = build_classifier(cell(tiny_checkpoint), 2)
    assert torch.equal(a.head.weight, b.head.weight)
    other = build_classifier(cell(tiny_checkpoint).model_copy(update={"seed": 1}), 2)
    assert not torch.equal(a.head.weight, other.head.weight)  # the cell's seed, not a fixed one


@pytest.mark.parametrize("n_freeze,epochs,expected", [(0, 4, 0), (1, 4, 2), (2, 7, 3), (1, 2, 1), (2, 3, 1)])
def test_frozen_epochs_is_floor_half(n_freeze, epochs, expected):
    assert frozen_epochs(n_freeze, epochs) == expected


def test_freeze_bottom_blocks_and_embeddings(tiny_checkpoint):
    model = build_classifier(cell(tiny_checkpoint, n_freeze=1), 2)
    blocks = encoder_blocks(model.encoder)
    set_bottom_frozen(model, 1, frozen=True)
    assert not any(p.requires_grad for p in model.encoder.embeddings.parameters())
    assert not any(p.requires_grad for p in blocks[0].parameters())
    assert all(p.requires_grad for p in blocks[1].parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    set_bottom_frozen(model, 1, frozen=False)
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="n_freeze"):
        set_bottom_frozen(model, 5, frozen=True)


def _long_cell(tiny_checkpoint, max_len, attention=None, **model):
    return CellConfig.model_validate({"data": {"dataset": "local", "path": "/tmp", "max_len": max_len},
                                      "model": {"checkpoint": str(tiny_checkpoint), **model},
                                      "attention": attention or {"kind": "softmax"}})


def test_learned_positions_extend_only_when_asked(tiny_checkpoint):
    with pytest.raises(ValueError, match="data.max_len: 1100 exceeds the checkpoint's 512 learned positions"):
        build_classifier(_long_cell(tiny_checkpoint, 1100), 2)
    model = build_classifier(_long_cell(tiny_checkpoint, 1100, extend_positions=True), 2)
    table = model.encoder.embeddings.position_embeddings.weight
    assert table.shape[0] == 1100 and torch.equal(table[512:1024], table[:512])
    ids = torch.randint(5, 40, (1, 1100))
    model(ids, torch.ones_like(ids)).sum().backward()


@pytest.mark.parametrize("attention", [{"kind": "softmax"}, {"kind": "favor", "nb_features": 16},
                                       {"kind": "lsh", "num_hashes": 2, "chunk_size": 32}])
def test_rope_scratch_models_have_no_position_table_and_no_length_limit(tiny_checkpoint, attention):
    cfg = _long_cell(tiny_checkpoint, 2048, attention, from_scratch=True, positions="rope", gradient_checkpointing=True)
    model = build_classifier(cfg, 2)
    assert not any("position_embeddings" in name for name, _ in model.named_parameters())
    assert model.encoder.is_gradient_checkpointing
    model.train()
    ids = torch.randint(5, 40, (1, 2048))
    model(ids, torch.ones_like(ids)).sum().backward()
    # Without positions, attention is a function of the set of tokens: the first token's output would not
    # change when the others are reordered. With RoPE it must.
    short = ids[:, :64]
    shuffled = torch.cat([short[:, :1], short[:, 1:].flip(-1)], dim=-1)
    model.eval()
    with torch.no_grad():
        assert not torch.allclose(model(short, torch.ones_like(short)), model(shuffled, torch.ones_like(short)))


def test_max_len_check_for_encoders_without_learned_table():
    from transformers import ModernBertConfig, ModernBertModel

    config = ModernBertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                              intermediate_size=37, max_position_embeddings=128, pad_token_id=0, bos_token_id=1,
                              eos_token_id=2, cls_token_id=1, sep_token_id=2)
    encoder = ModernBertModel(config)  # rotary positions: no embeddings.position_embeddings table
    assert position_offset(encoder) == 0
    check_max_len(encoder, 128)
    with pytest.raises(ValueError, match="data.max_len: 129"):
        check_max_len(encoder, 129)
