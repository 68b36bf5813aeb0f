"""The LR schedule against the study's formula, computed independently of raygrid.training.schedule.

The study (research_design.md, "Stages"; its training loop's `_build_scheduler`): W = int(total x
warmup_ratio) warm-up steps with factor s / W (step 0 runs at 0), then
min + (1 - min) * 1/2 (1 + cos(pi (s - W) / (total - W))); without warm-up torch's CosineAnnealingLR.
transformers' cosine-with-min-lr schedule is the same formula, written by others: both serve as oracles.
"""
import math

import pytest
import torch
from transformers.optimization import get_cosine_with_min_lr_schedule_with_warmup, get_linear_schedule_with_warmup

from raygrid.spec.config import OptimConfig
from raygrid.training.schedule import lr_factor, make_scheduler, warmup_steps


def lrs_used(scheduler, optimizer, steps: int) -> list[float]:
    """The learning rate each of `steps` optimizer steps runs at (read before the step, as the optimizer uses it)."""
    used = []
    for _ in range(steps):
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return used


def optimizer(lr: float = 1.0) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


@pytest.mark.parametrize("total,warmup_ratio,min_lr", [(100, 0.1, 0.2), (5691, 0.1, 0.2), (813, 0.1, 0.5), (37, 0.25, 0.0)])
def test_cosine_steps_use_the_study_formula(total, warmup_ratio, min_lr):
    opt = optimizer()
    ours = lrs_used(make_scheduler(opt, OptimConfig(lr=1.0, warmup_ratio=warmup_ratio, min_lr_ratio=min_lr,
                                                    schedule="cosine"), total), opt, total)
    oracle_opt = optimizer()
    oracle = get_cosine_with_min_lr_schedule_with_warmup(oracle_opt, int(total * warmup_ratio), total, min_lr_rate=min_lr)
    assert ours == pytest.approx(lrs_used(oracle, oracle_opt, total), abs=1e-12)
    assert ours[0] == 0.0  # the first update runs at lr 0 (s / W with s = 0), as in the study and transformers


def test_warmup_is_truncated_and_progress_counts_from_its_end():
    assert warmup_steps(100, 0.29) == 28  # 0.29 * 100 = 28.999999999999996: int() truncates, as the study
    assert warmup_steps(5691, 0.1) == 569 and warmup_steps(9, 0.1) == 0
    total, w = 20, 2
    factors = [lr_factor(s, total, 0.1, 0.2, "cosine") for s in range(total + 1)]
    assert factors[:3] == [0.0, 0.5, 1.0]  # s / W, then the peak exactly at s = W
    halfway = w + (total - w) // 2  # progress 1/2: cos = 0, factor = min + (1 - min) / 2
    assert factors[halfway] == pytest.approx(0.2 + 0.8 * 0.5)
    assert factors[total] == pytest.approx(0.2)  # after the last step: min_lr_ratio
    assert factors[total - 1] == pytest.approx(0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * 17 / 18)))
    assert lr_factor(total + 5, total, 0.1, 0.2, "cosine") == pytest.approx(0.2)  # past the end: stays at min


def test_without_warmup_cosine_is_torch_cosine_annealing():
    total, min_lr = 9, 0.5
    assert warmup_steps(total, 0.1) == 0
    opt = optimizer(2.0)
    ours = lrs_used(make_scheduler(opt, OptimConfig(lr=2.0, warmup_ratio=0.1, min_lr_ratio=min_lr, schedule="cosine"),
                                   total), opt, total)
    ref_opt = optimizer(2.0)
    annealing = torch.optim.lr_scheduler.CosineAnnealingLR(ref_opt, T_max=total, eta_min=2.0 * min_lr)
    assert ours == pytest.approx(lrs_used(annealing, ref_opt, total), abs=1e-9)


def test_linear_decays_to_min_and_matches_transformers_at_min_zero():
    total = 50
    factors = [lr_factor(s, total, 0.1, 0.0, "linear") for s in range(total)]
    opt = optimizer()
    oracle = lrs_used(get_linear_schedule_with_warmup(opt, 5, total), opt, total)
    assert factors == pytest.approx(oracle, abs=1e-12)
    floored = [lr_factor(s, total, 0.1, 0.2, "linear") for s in range(total + 1)]
    assert all(a >= b - 1e-12 for a, b in zip(floored[5:], floored[6:])) and floored[-1] == pytest.approx(0.2)
