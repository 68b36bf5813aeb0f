"""optim.precision: what runs on which device, fp16's skipped steps and the schedule, the scaler in
checkpoints, and the older `optim.mixed_precision` key (configs and recorded runs)."""
import copy

import pytest
import torch
from pydantic import ValidationError

from raygrid.orchestration.finished import config_change
from raygrid.spec.config import CellConfig, OptimConfig, upgrade_recorded
from raygrid.spec.grid import Cell
from raygrid.tracking.cell_params import cell_params
from raygrid.training.objectives import Classification
from raygrid.training.precision import Precision, autocast, effective_precision
from raygrid.training.schedule import make_scheduler
from raygrid.training.train_loop import fit, train_epoch
from raygrid.model.encoder import build_classifier
from tests.unit.test_train_loop import _setup

CPU = torch.device("cpu")


@pytest.mark.parametrize("requested", ["bf16", "fp16", "fp32"])
def test_cpu_always_runs_fp32(requested):
    assert effective_precision(requested, CPU) == "fp32"
    precision = Precision.for_device(requested, CPU)
    assert precision.name == "fp32" and not precision.scaler.is_enabled()
    with precision.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_autocast_still_takes_the_older_bool():
    for flag in (True, False):  # True = bf16, False = fp32: a no-op on CPU either way
        with autocast(CPU, flag):
            assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


class Toy(torch.nn.Module):
    """A linear regression whose gradient overflows (inf) at the forward passes listed in `poison`."""

    def __init__(self, poison=()):
        super().__init__()
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(4, 1)
        self.forwards, self.poison = 0, set(poison)

    def forward(self, x):
        out = self.layer(x)
        if self.forwards in self.poison:
            out.register_hook(lambda grad: grad * float("inf"))  # overflowed gradients, finite loss
        self.forwards += 1
        return out


class ToyObjective:
    def loss(self, model, batch):
        return ((model(batch["x"]) - 1.0) ** 2).mean()


def toy_batches(n):
    return [{"x": torch.ones(2, 4), "attention_mask": torch.ones(2, 4)} for _ in range(n)]


def test_fp16_skips_an_overflowed_step_without_advancing_the_schedule():
    model = Toy(poison={2})
    # lr 0.01: each step closes 1/10 of the gap to the target (at 0.1 the first step would close it all)
    cfg = OptimConfig(lr=0.01, epochs=1, warmup_ratio=0.0, schedule="cosine")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scheduler = make_scheduler(optimizer, cfg, total_steps=5)
    precision = Precision("fp16", CPU)  # a real GradScaler, on CPU
    scale = precision.scaler.get_scale()
    steps, weights = [], []

    def on_step():
        steps.append(scheduler.last_epoch)
        weights.append(model.layer.weight.detach().clone())

    stats = train_epoch(model, ToyObjective(), toy_batches(5), optimizer, scheduler, cfg, CPU, on_step, precision)
    assert stats["skipped_steps"] == 1 and len(steps) == 4
    assert scheduler.last_epoch == 4  # 5 batches, 1 skipped: the schedule advanced 4 times, not 5
    assert precision.scaler.get_scale() == scale / 2  # the scaler backed off once
    assert all(not torch.equal(a, b) for a, b in zip(weights, weights[1:]))  # every step taken moved the weights
    assert all(torch.isfinite(w).all() for w in weights)  # the overflowed gradients never reached them


def test_fp16_clips_the_unscaled_gradient():
    model = Toy()
    cfg = OptimConfig(lr=1.0, epochs=1, clip_norm=1e-3, warmup_ratio=0.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    train_epoch(model, ToyObjective(), toy_batches(1), optimizer, make_scheduler(optimizer, cfg, 1), cfg, CPU,
                precision=Precision("fp16", CPU))
    moved = torch.cat([p.detach().flatten() for p in model.parameters()]) - before
    # SGD at lr 1 moves by the clipped gradient: norm clip_norm (a clip of the *scaled* gradient
    # would leave it 65536x too small, one of the unscaled gradient exactly at the limit)
    assert moved.norm().item() == pytest.approx(1e-3, rel=1e-3)


def test_the_scaler_state_is_checkpointed_and_resumed(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(Precision, "for_device", classmethod(lambda cls, requested, device: cls("fp16", device)))
    cfg, data, loaders = _setup(tiny_checkpoint, tmp_path, optim={"epochs": 2, "precision": "fp16"})
    states, finals = [], []

    def report(metrics, state):
        (finals if state is None else states).append(copy.deepcopy(state if state is not None else metrics))

    fit(cfg, build_classifier(cfg, data.num_labels), loaders, Classification(data.num_labels), CPU, report)
    assert states[0]["scaler"]["scale"] > 0 and finals[0]["precision"] == "fp16"
    resume = states[0]
    resume["scaler"] = {**resume["scaler"], "scale": 1024.0}
    again = []
    fit(cfg, build_classifier(cfg, data.num_labels), loaders, Classification(data.num_labels), CPU,
        lambda m, s: again.append(copy.deepcopy(s)), resume=resume)
    assert again[0]["scaler"]["scale"] in (1024.0, 512.0)  # continued from the checkpoint's scale, not 65536


def test_a_cpu_cell_records_fp32_and_no_skipped_steps(tiny_checkpoint, tmp_path):
    cfg, data, loaders = _setup(tiny_checkpoint, tmp_path, optim={"epochs": 1, "precision": "fp16"})
    final = fit(cfg, build_classifier(cfg, data.num_labels), loaders, Classification(data.num_labels), CPU,
                lambda m, s: None)
    assert final["precision"] == "fp32" and final["skipped_steps"] == 0


# --- the older key: optim.mixed_precision ------------------------------------------------------

def test_mixed_precision_reads_as_precision():
    assert OptimConfig(mixed_precision=True).precision == "bf16"
    assert OptimConfig(mixed_precision=False).precision == "fp32"
    assert OptimConfig(mixed_precision=True, precision="fp16").precision == "fp16"  # both mixed: consistent
    assert "mixed_precision" not in OptimConfig(mixed_precision=True).model_dump()
    assert OptimConfig().precision == "bf16"  # the default is what mixed_precision: true did
    for bad in ({"mixed_precision": False, "precision": "bf16"}, {"mixed_precision": True, "precision": "fp32"},
                {"mixed_precision": "yes"}):
        with pytest.raises(ValidationError, match="mixed_precision"):
            OptimConfig(**bad)


def _cell(**optim) -> Cell:
    config = CellConfig.model_validate({"data": {"dataset": "local", "path": "/x"}, "model": {"checkpoint": "/m"},
                                        "optim": optim})
    return Cell("c", {}, config)


def _recorded_before_precision(mixed: bool) -> dict[str, str]:
    """A finished run's params as raygrid recorded them when the key was optim.mixed_precision."""
    params = cell_params(_cell().config.model_dump(mode="json"), {})
    del params["optim.precision"]
    return {**params, "optim.mixed_precision": str(mixed)}


def test_a_run_recorded_with_mixed_precision_is_the_same_cell_only_at_the_same_precision():
    assert upgrade_recorded({"optim.mixed_precision": "True", "seed": "0"}) == {"optim.precision": "bf16", "seed": "0"}
    assert config_change(_recorded_before_precision(True), _cell()) is None
    assert config_change(_recorded_before_precision(True), _cell(mixed_precision=True)) is None
    assert config_change(_recorded_before_precision(False), _cell(precision="fp32")) is None
    assert config_change(_recorded_before_precision(True), _cell(precision="fp16")) == "optim.precision: bf16 -> fp16"
    assert config_change(_recorded_before_precision(False), _cell()) == "optim.precision: fp32 -> bf16"
