"""LSH qk: shared in a whole model: tied projections, one optimizer parameter, export/reload, refusals."""
from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from raygrid.attention import LshParams, bound, hf_bridge
from raygrid.spec.config import CellConfig
from raygrid.model.encoder import build_masked_lm, export_pretrained, weights_fingerprint

SHARED = {"kind": "lsh", "qk": "shared", "chunk_size": 8, "num_hashes": 2, "look_forward": 1}


def cell(checkpoint, attention=SHARED, **model) -> CellConfig:
    return CellConfig.model_validate({"kind": "mlm", "data": {"dataset": "local", "path": "/x", "max_len": 32},
                                      "model": {"checkpoint": str(checkpoint), **model}, "attention": attention})


def test_pretrained_checkpoint_with_shared_qk_is_refused(tiny_checkpoint):
    with pytest.raises(ValidationError, match="attention.qk: shared ties each key projection"):
        cell(tiny_checkpoint)
    assert cell(tiny_checkpoint, from_scratch=True).attention.exclude_self is True
    assert cell(tiny_checkpoint, attention={**SHARED, "qk": "separate"}).attention.exclude_self is False


def test_shared_qk_ties_key_to_query_and_trains_one_parameter(tiny_checkpoint):
    model = build_masked_lm(cell(tiny_checkpoint, from_scratch=True)).train()
    layers = hf_bridge.attention_modules(model.encoder)
    assert all(m.key.weight is m.query.weight and m.key.bias is m.query.bias for m in layers)
    names = [name for name, _ in model.named_parameters()]
    assert not any(".key." in name for name in names)  # the optimizer sees W_Q once
    ids = torch.randint(5, 60, (2, 32), generator=torch.Generator().manual_seed(0))
    labels = ids.masked_fill(torch.rand(2, 32, generator=torch.Generator().manual_seed(1)) > 0.3, -100)
    logits, targets = model(ids, torch.ones_like(ids), labels)
    torch.nn.functional.cross_entropy(logits, targets).backward()
    assert layers[0].query.weight.grad.abs().sum() > 0


def test_shared_qk_weights_survive_export_and_reload(tiny_checkpoint, tmp_path):
    cfg = cell(tiny_checkpoint, from_scratch=True)
    model = build_masked_lm(cfg)
    with torch.no_grad():  # trained-looking weights, different from any fresh init
        for layer in hf_bridge.attention_modules(model.encoder):
            layer.query.weight.add_(1.0)
    folder = export_pretrained(model, tmp_path / "export", str(tiny_checkpoint))
    linked = cfg.model.model_copy(update={"checkpoint": "stage:grid/wiki/x", "from_scratch": False})
    child_cfg = cfg.model_copy(update={"model": linked})  # a later stage starting from the export
    child = build_masked_lm(child_cfg, location=str(folder))
    assert weights_fingerprint(child.encoder) == weights_fingerprint(model.encoder)
    for layer in hf_bridge.attention_modules(child.encoder):
        assert layer.key.weight is layer.query.weight


def test_untied_module_refuses_shared_forward():
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=37, attn_implementation=hf_bridge.implementation_name(LshParams()))
    model = BertModel(config)
    bound.attach_attention_state(model, LshParams(chunk_size=4), seed=0)  # separate: not tied
    for layer in hf_bridge.attention_modules(model):
        layer.raygrid_attention_params = LshParams(qk="shared", chunk_size=4)
    with pytest.raises(RuntimeError, match="needs tied projections"):
        model(torch.ones(1, 8, dtype=torch.long))


def test_a_shared_qk_stage_needs_a_shared_qk_parent(tmp_path):
    from raygrid.spec.grid import GridError
    from raygrid.spec.loader import load_grid

    text = """
name: chain
base: {model: {checkpoint: /tmp/ckpt, from_scratch: true}, optim: {epochs: 1}}
stages:
  - name: wiki
    base: {kind: mlm, data: {dataset: wikipedia, path: /tmp/wiki}, attention: PARENT}
  - name: ft
    init: wiki
    base: {data: {dataset: imdb, path: /tmp/imdb}, attention: {kind: lsh, qk: shared}}
"""
    path = tmp_path / "grid.yaml"
    path.write_text(text.replace("PARENT", "{kind: lsh, qk: shared}"))
    assert load_grid(path).cells[-1].config.attention.qk == "shared"
    path.write_text(text.replace("PARENT", "{kind: lsh, qk: separate}"))
    with pytest.raises(GridError, match=r"stages.ft: attention.qk: shared would replace the key weights"):
        load_grid(path)
