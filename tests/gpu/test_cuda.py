"""What a GPU changes: bf16 autocast, the peak-memory metric, kernels on CUDA vs CPU, long inputs."""
import math

import numpy as np
import pyarrow as pa
import pytest
import torch

from raygrid.attention import records
from raygrid.spec.config import CellConfig
from raygrid.training.metrics import peak_gpu_mem_mb
from raygrid.model.encoder import build_classifier
from raygrid.training.objectives import Classification, autocast
from raygrid.training.loaders import table_loaders
from raygrid.training.train_loop import fit

pytestmark = pytest.mark.gpu

# Every registered variant: its defaults (they suit a pretrained checkpoint) and its study setting.
KINDS = {record.kind: record.params().model_dump() for record in records()}
STUDY = {record.kind: record.study_params()[1].model_dump() for record in records()}


def cell(checkpoint, attention: dict, max_len: int = 128, **model) -> CellConfig:
    return CellConfig.model_validate(
        {"data": {"dataset": "local", "path": "unused", "max_len": max_len},
         "model": {"checkpoint": str(checkpoint), **model}, "attention": attention,
         "optim": {"lr": 1e-3, "epochs": 2, "batch_size": 4}})


def random_tables(rows: int, low: int, high: int, vocab: int, seed: int = 0) -> dict[str, pa.Table]:
    rng = np.random.default_rng(seed)

    def table(n):
        lengths = rng.integers(low, high + 1, n)
        return pa.table({"input_ids": [rng.integers(5, vocab, k).tolist() for k in lengths],
                         "label": rng.integers(0, 2, n), "n_tokens": lengths.astype("int32")})

    return {"train": table(rows), "validation": table(rows // 4), "test": table(rows // 4)}


def test_bf16_autocast_runs_matmuls_in_bf16_and_keeps_an_fp32_loss(cuda, tiny_checkpoint):
    model = build_classifier(cell(tiny_checkpoint, KINDS["softmax"]), 2).to(cuda)
    seen = []
    linear = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    linear.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    batch = {"input_ids": torch.randint(5, 50, (2, 64), device=cuda),
             "attention_mask": torch.ones(2, 64, dtype=torch.long, device=cuda), "labels": torch.tensor([0, 1], device=cuda)}
    with autocast(cuda, True):
        loss = Classification(2).loss(model, batch)
    loss.backward()
    assert seen and seen[0] == torch.bfloat16 and loss.dtype == torch.float32 and math.isfinite(loss.item())
    assert all(p.grad.dtype == torch.float32 for p in model.parameters() if p.grad is not None)


def test_peak_gpu_memory_metric_sees_an_allocation_and_resets(cuda):
    torch.cuda.reset_peak_memory_stats(cuda)
    block = torch.empty(256 * 2**20, dtype=torch.uint8, device=cuda)
    assert peak_gpu_mem_mb(cuda) >= 256
    del block
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(cuda)
    assert peak_gpu_mem_mb(cuda) < 256


@pytest.mark.parametrize("kind", list(KINDS))
def test_attention_kinds_agree_between_cuda_and_cpu(cuda, tiny_checkpoint, kind):
    """Same weights, same seeded FAVOR+ projection / LSH rotations: fp32 outputs match across devices."""
    model = build_classifier(cell(tiny_checkpoint, KINDS[kind]), 2).eval()
    ids = torch.randint(5, 50, (2, 256), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, 256, dtype=torch.long)
    mask[1, 200:] = 0
    with torch.no_grad():
        on_cpu = model(ids, mask)
        on_cuda = model.to(cuda)(ids.to(cuda), mask.to(cuda)).cpu()
    torch.testing.assert_close(on_cuda, on_cpu, atol=2e-4, rtol=1e-3)


@pytest.mark.parametrize("length", [4096, 16384])
@pytest.mark.parametrize("kind", list(STUDY))
def test_study_shaped_model_trains_a_step_at_long_lengths(cuda, tiny_checkpoint, kind, length):
    """BERT_SMALL + RoPE forward/backward in bf16 at 4k and 16k tokens, study settings: finite loss and gradients."""
    cfg = cell(tiny_checkpoint, STUDY[kind], max_len=length, from_scratch=True, positions="rope",
               config_overrides={"num_hidden_layers": 4, "hidden_size": 512, "intermediate_size": 2048,
                                 "num_attention_heads": 8, "attention_probs_dropout_prob": 0.0})
    model = build_classifier(cfg, 2).to(cuda)
    batch = {"input_ids": torch.randint(5, 50, (1, length), device=cuda),
             "attention_mask": torch.ones(1, length, dtype=torch.long, device=cuda), "labels": torch.tensor([1], device=cuda)}
    with autocast(cuda, True):
        loss = Classification(2).loss(model, batch)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert math.isfinite(loss.item()) and grads and all(torch.isfinite(g).all() for g in grads)


def test_fit_on_cuda_uses_fused_adamw_and_reports_peak_memory(cuda, tiny_checkpoint, monkeypatch):
    cfg = cell(tiny_checkpoint, KINDS["softmax"])
    tables = random_tables(64, 16, 128, vocab=50)
    loaders = table_loaders(cfg, tables, pad_token_id=0, pin_memory=True)
    optimizers = []
    original = torch.optim.AdamW.__init__

    def spy(self, *args, **kwargs):
        optimizers.append(kwargs)
        original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "__init__", spy)
    final = fit(cfg, build_classifier(cfg, 2).to(cuda), loaders, Classification(2), cuda, lambda m, s: None)
    assert optimizers and optimizers[0].get("fused") is True
    assert final["peak_gpu_mem_mb"] > 0 and final["tokens_per_s"] > 0 and final["padding_ratio"] >= 1.0
    assert math.isfinite(final["test_f1_macro"])
