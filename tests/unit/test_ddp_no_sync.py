"""DDP accumulation: every backward but the one before an optimizer step runs under `model.no_sync()`,
a partial accumulation at the epoch's end included (its last micro-batch must sync)."""
import contextlib

import pytest
import torch

from raygrid.spec.config import OptimConfig
from raygrid.training.schedule import make_scheduler
from raygrid.training.train_loop import train_epoch

CPU = torch.device("cpu")


class RecordingDDP(torch.nn.Module):
    """Stands in for DistributedDataParallel: records, per backward, whether it ran under no_sync."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(4, 1)
        self.in_no_sync, self.synced = False, []
        self.layer.weight.register_hook(self._record)

    def _record(self, grad):
        self.synced.append(not self.in_no_sync)  # DDP's all-reduce hooks fire here, in backward
        return grad

    @contextlib.contextmanager
    def no_sync(self):
        self.in_no_sync = True
        try:
            yield
        finally:
            self.in_no_sync = False

    def forward(self, x):
        return self.layer(x)


class Objective:
    def loss(self, model, batch):
        return ((model(batch["x"]) - 1.0) ** 2).mean()


def _run(model, n_batches: int, grad_accum: int) -> int:
    cfg = OptimConfig(lr=0.01, epochs=1, warmup_ratio=0.0, grad_accum=grad_accum)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scheduler = make_scheduler(optimizer, cfg, total_steps=n_batches)
    steps = []
    batches = [{"x": torch.ones(2, 4), "attention_mask": torch.ones(2, 4)} for _ in range(n_batches)]
    train_epoch(model, Objective(), iter(batches), optimizer, scheduler, cfg, CPU, lambda: steps.append(1))
    return len(steps)


@pytest.mark.parametrize("n_batches, grad_accum, expected", [
    (6, 3, [False, False, True, False, False, True]),
    (7, 3, [False, False, True, False, False, True, True]),  # the partial tail: one micro-batch, synced
    (5, 3, [False, False, True, False, True]),  # the partial tail: two, the last one synced
    (3, 1, [True, True, True]),  # no accumulation: every backward syncs
    (2, 4, [False, True]),  # fewer batches than one accumulation: the epoch's last syncs
])
def test_only_the_backward_before_an_optimizer_step_syncs(n_batches, grad_accum, expected):
    model = RecordingDDP()
    steps = _run(model, n_batches, grad_accum)
    assert model.synced == expected
    assert steps == sum(expected)  # one optimizer step per synced backward


def test_a_model_without_no_sync_trains_as_before():
    model = torch.nn.Linear(4, 1)
    before = model.weight.detach().clone()
    assert _run(model, n_batches=5, grad_accum=2) == 3
    assert not torch.equal(before, model.weight)


def test_an_empty_epoch_takes_no_step():
    assert _run(RecordingDDP(), n_batches=0, grad_accum=2) == 0
