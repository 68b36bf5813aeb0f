"""Position tables: disabled for RoPE runs (no positions left), extended by copying (Longformer)."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoModel, GPT2Config, GPT2Model, RobertaConfig, RobertaModel

from raygrid.model.positions import NoPositions, disable_learned_positions, extend_learned_positions, position_offset


def _ids(batch, n, seed=0):
    return torch.randint(5, 60, (batch, n), generator=torch.Generator().manual_seed(seed))


def test_disable_removes_positions_and_is_idempotent(tiny_checkpoint, tmp_path):
    model = AutoModel.from_pretrained(tiny_checkpoint).eval()
    before = sum(p.numel() for p in model.parameters())
    assert disable_learned_positions(model) == 512 * 32
    assert disable_learned_positions(model) == 0  # second call: nothing left to drop
    assert isinstance(model.embeddings.position_embeddings, NoPositions)
    assert sum(p.numel() for p in model.parameters()) == before - 512 * 32
    # No positions at all: self-attention is permutation-equivariant, so shuffling tokens shuffles outputs.
    ids, perm = _ids(2, 12), torch.randperm(12, generator=torch.Generator().manual_seed(1))
    out, shuffled = model(ids).last_hidden_state, model(ids[:, perm]).last_hidden_state
    torch.testing.assert_close(shuffled, out[:, perm], atol=1e-5, rtol=1e-5)
    # HF re-creates the table on load (missing from the saved weights); disabling again is safe.
    model.save_pretrained(tmp_path)
    reloaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(reloaded.embeddings.position_embeddings, torch.nn.Embedding)
    assert disable_learned_positions(reloaded) == 512 * 32
    torch.testing.assert_close(reloaded(ids).last_hidden_state, out)


def test_disabled_zeros_follow_dtype():
    model = GPT2Model(GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=50))
    with pytest.raises(ValueError, match="gpt2"):
        disable_learned_positions(model)
    zeros = NoPositions(8, torch.zeros(1)).to(torch.float64)(torch.arange(5)[None])
    assert zeros.shape == (1, 5, 8) and zeros.dtype == torch.float64 and not zeros.any()
    assert not list(NoPositions(8, torch.zeros(1)).parameters())


def test_extend_bert_copies_table(tiny_checkpoint):
    model = AutoModel.from_pretrained(tiny_checkpoint).eval()
    short = _ids(2, 40)
    reference = model(short).last_hidden_state
    old = model.embeddings.position_embeddings.weight.detach().clone()
    assert extend_learned_positions(model, 500) == 0 and position_offset(model) == 0
    assert extend_learned_positions(model, 1300) == 788
    weight = model.embeddings.position_embeddings.weight
    assert weight.shape == (1300, 32) and weight.requires_grad and weight.dtype == old.dtype
    assert torch.equal(weight[:512], old) and torch.equal(weight[512:1024], old)
    assert torch.equal(weight[1024:], old[:276])
    assert model.config.max_position_embeddings == 1300
    assert model.embeddings.position_ids.shape == model.embeddings.token_type_ids.shape == (1, 1300)
    assert torch.equal(model.embeddings.position_ids[0], torch.arange(1300))
    torch.testing.assert_close(model(short).last_hidden_state, reference)  # short inputs unchanged
    model.train()
    hidden = model(_ids(1, 1300), attention_mask=torch.ones(1, 1300)).last_hidden_state
    hidden.pow(2).mean().backward()
    grad = model.embeddings.position_embeddings.weight.grad
    assert torch.isfinite(hidden).all() and grad[1024:].abs().sum() > 0
    assert extend_learned_positions(model, 1300) == 0


def test_extend_roberta_keeps_offset_rows():
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                           intermediate_size=37, max_position_embeddings=34, pad_token_id=1)
    model = RobertaModel(config, add_pooling_layer=False).eval()
    old = model.embeddings.position_embeddings.weight.detach().clone()  # rows 0, 1 reserved; 32 learned
    assert position_offset(model) == 2
    assert extend_learned_positions(model, 100) == 66
    weight = model.embeddings.position_embeddings.weight
    assert torch.equal(weight[:2], old[:2])
    for start in (2, 34, 66):
        assert torch.equal(weight[start : start + 32], old[2:])
    assert torch.equal(weight[98:], old[2:4])
    assert model.embeddings.position_embeddings.padding_idx == 1
    hidden = model(torch.randint(3, 99, (1, 98))).last_hidden_state  # positions 2 … 99
    assert hidden.shape == (1, 98, 32) and torch.isfinite(hidden).all()


def test_extend_refuses_disabled_table(tiny_checkpoint):
    model = AutoModel.from_pretrained(tiny_checkpoint)
    disable_learned_positions(model)
    with pytest.raises(ValueError, match="disabled"):
        extend_learned_positions(model, 1024)
