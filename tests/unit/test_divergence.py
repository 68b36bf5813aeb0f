"""A diverging cell stops with a clear error at the epoch where its loss left the finite numbers."""
import math

import pytest
import torch

from raygrid.model.encoder import build_classifier
from raygrid.training.objectives import Classification
from raygrid.training.train_loop import NonFiniteLossError, check_finite, fit
from tests.unit.test_train_loop import _setup


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_check_finite_names_value_epoch_and_step(value):
    with pytest.raises(NonFiniteLossError, match=rf"loss is {value} at epoch 3, step 17"):
        check_finite(value, 3, 17)
    check_finite(0.5, 3, 17)  # a finite loss passes


def test_a_diverging_cell_stops_before_reporting_a_nan_epoch(tiny_checkpoint, tmp_path):
    # lr 1e30 passes validation (finite) but overflows the weights within the first epoch.
    cfg, data, loaders = _setup(tiny_checkpoint, tmp_path, optim={"lr": 1e30, "warmup_ratio": 0.0})
    model = build_classifier(cfg, data.num_labels)
    reports = []
    with pytest.raises(NonFiniteLossError, match=r"loss is (nan|inf) at epoch 0, step 3"):
        fit(cfg, model, loaders, Classification(data.num_labels), torch.device("cpu"),
            lambda metrics, state: reports.append(metrics))
    assert reports == []  # nothing non-finite reached MLflow, no epoch chosen


class _NanValidationAtEpoch1(Classification):
    """Finite training loss, but at epoch 1 the weights give nan logits: argmax still yields an F1 (here 0.9)."""

    epoch = -1

    def start_epoch(self, epoch, device):
        self.epoch = epoch

    def evaluate(self, model, batches, device, mixed_precision):
        val = super().evaluate(model, batches, device, mixed_precision)
        return {**val, "loss": math.nan, "f1_macro": 0.9} if self.epoch == 1 else val


def test_an_epoch_with_nan_validation_loss_is_never_reported_or_chosen(tiny_checkpoint, tmp_path):
    cfg, data, loaders = _setup(tiny_checkpoint, tmp_path, optim={"epochs": 3})
    model = build_classifier(cfg, data.num_labels)
    reports = []
    with pytest.raises(NonFiniteLossError, match=r"validation loss is nan at epoch 1, step 6"):
        fit(cfg, model, loaders, _NanValidationAtEpoch1(data.num_labels), torch.device("cpu"),
            lambda metrics, state: reports.append(metrics))
    assert [m["epoch"] for m in reports] == [0]
