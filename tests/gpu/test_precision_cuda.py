"""optim.precision on CUDA: fp16 autocast + GradScaler with the fused AdamW, what a cell records, skipped steps."""
import math

import pytest
import torch

from raygrid.model.encoder import build_classifier
from raygrid.training.objectives import Classification
from raygrid.training.loaders import table_loaders
from raygrid.training.precision import Precision
from raygrid.training.schedule import make_scheduler
from raygrid.training.train_loop import fit, make_optimizer, train_epoch
from raygrid.spec.config import OptimConfig
from tests.gpu.test_cuda import KINDS, cell, random_tables

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("precision,dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_a_cell_trains_at_its_precision_and_records_it(cuda, tiny_checkpoint, precision, dtype):
    cfg = cell(tiny_checkpoint, KINDS["softmax"], head="pooler")
    cfg = cfg.model_copy(update={"optim": cfg.optim.model_copy(update={"precision": precision})})
    model = build_classifier(cfg, 2).to(cuda)
    seen = []
    model.pooler[0].register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    states = []
    final = fit(cfg, model, table_loaders(cfg, random_tables(64, 16, 128, 60), 0), Classification(2), cuda,
                lambda m, s: states.append(s))
    assert final["precision"] == precision and seen and seen[0] == dtype
    assert math.isfinite(final["test_loss"]) and final["skipped_steps"] >= 0
    assert bool(states[0]["scaler"]) == (precision == "fp16")  # the loss scale is checkpointed for fp16 only


class Overflowing(torch.nn.Module):
    """A linear regression whose gradient is inf at the listed forward passes (loss stays finite)."""

    def __init__(self, poison):
        super().__init__()
        self.layer, self.forwards, self.poison = torch.nn.Linear(8, 1), 0, set(poison)

    def forward(self, x):
        out = self.layer(x)
        if self.forwards in self.poison:
            out.register_hook(lambda grad: grad * float("inf"))
        self.forwards += 1
        return out


def test_fused_adamw_fp16_skips_overflowed_steps_and_holds_the_schedule(cuda):
    model = Overflowing(poison={1, 3}).to(cuda)
    cfg = OptimConfig(lr=1e-3, epochs=1, warmup_ratio=0.0, schedule="cosine")
    optimizer = make_optimizer(model, cfg, cuda)  # fused on CUDA: the scaler hands it found_inf
    scheduler = make_scheduler(optimizer, cfg, total_steps=6)
    batches = [{"x": torch.ones(4, 8, device=cuda), "attention_mask": torch.ones(4, 8)} for _ in range(6)]

    class Objective:
        def loss(self, model, batch):
            return ((model(batch["x"]).float() - 1.0) ** 2).mean()

    stats = train_epoch(model, Objective(), batches, optimizer, scheduler, cfg, cuda, precision=Precision("fp16", cuda))
    assert stats["skipped_steps"] == 2 and scheduler.last_epoch == 4
    assert all(torch.isfinite(p).all() for p in model.parameters())
