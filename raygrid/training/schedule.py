"""The learning-rate schedule of a cell: linear warm-up, then linear or cosine decay to min_lr_ratio.

The formula is the study's (its training loop, `_build_scheduler`) and transformers' `get_*_schedule_with_warmup`:
with W = int(total x warmup_ratio) warm-up steps, the factor of optimizer step s (0-based; the
factor that step s *uses*) is

    s / W                                                     for s < W  (the first step runs at 0)
    min + (1 - min) * shape((s - W) / max(1, total - W))      afterwards (progress counts from the end of warm-up)

with shape(p) = 1/2 (1 + cos(pi p)) (cosine) or 1 - p (linear); the factor reaches `min` after the
last step (s = total). W is truncated, not rounded (int(0.1 x 5691) = 569). Without warm-up (W = 0)
the cosine is torch's CosineAnnealingLR to min x lr, which is what the study used then.
"""
from __future__ import annotations

import math

import torch

from raygrid.spec.config import OptimConfig


def warmup_steps(total: int, warmup_ratio: float) -> int:
    """Warm-up length in optimizer steps: truncated, as the study's int(total_steps * warmup_ratio)."""
    return int(total * warmup_ratio)


def lr_factor(step: int, total: int, warmup_ratio: float, min_lr_ratio: float, schedule: str) -> float:
    """The multiplier of the base learning rate for optimizer step `step` of `total` (module docstring)."""
    warmup = warmup_steps(total, warmup_ratio)
    if step < warmup:
        return step / warmup
    # Clamped at 1: a loop that ran past `total` stays at min_lr_ratio instead of climbing the cosine back.
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    shape = 1 - progress if schedule == "linear" else 0.5 * (1 + math.cos(math.pi * progress))
    return min_lr_ratio + (1 - min_lr_ratio) * shape


def make_scheduler(optimizer, cfg: OptimConfig, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR over `total_steps` optimizer steps; step it once per optimizer step actually taken."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total_steps, cfg.warmup_ratio, cfg.min_lr_ratio, cfg.schedule))
