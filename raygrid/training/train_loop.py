"""Training of one cell: epochs of AdamW steps, validation, best checkpoint, test scoring.

The objective (raygrid.training.objectives: classification or masked-language modelling) decides the loss,
the evaluation and which epoch is best. Framework-free: batches come from callables and results
leave through `report`, so the same code runs inside a Ray Train worker (raygrid.orchestration.trial) and in
plain unit tests.
"""
from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from torch import nn

from raygrid.attention.hf_bridge import forward_count, set_forward_count
from raygrid.spec.config import CellConfig, OptimConfig
from raygrid.training import metric_names as M
from raygrid.training.metrics import peak_gpu_mem_mb, peak_host_mem_mb
from raygrid.model.encoder import frozen_epochs, set_bottom_frozen
from raygrid.training.objectives import autocast

Batch = dict[str, torch.Tensor]


@dataclass
class Loaders:
    """Where batches come from: train(epoch) reshuffles per epoch; eval splits are fixed."""

    train: Callable[[int], Iterable[Batch]]
    validation: Callable[[], Iterable[Batch]]
    test: Callable[[], Iterable[Batch]] | None  # None: the objective scores no test split (MLM)
    steps_per_epoch: int  # optimizer steps (after accumulation), for the LR schedule


@dataclass
class Progress:
    """Everything needed to resume a cell after its worker died; saved in every checkpoint."""

    epoch: int = 0  # next epoch to run
    step: int = 0
    best_score: float = -math.inf  # objective.score of the best epoch (higher is better)
    best_val: dict = field(default_factory=dict)
    last_val: dict = field(default_factory=dict)
    best_epoch: int = -1
    train_seconds: float = 0.0
    train_tokens: int = 0
    padded_tokens: int = 0  # tokens the model processed, padding included
    best_weights: dict | None = field(default=None, repr=False)


class NonFiniteLossError(FloatingPointError):
    """A cell diverged: its loss became nan or inf (the cell fails; the grid goes on)."""


def check_finite(loss_value: float, epoch: int, step: int, what: str = "loss") -> None:
    """Stop a diverging cell where its loss reaches the host, so no nan epoch is reported, kept or chosen as best."""
    if not math.isfinite(loss_value):
        raise NonFiniteLossError(f"{what} is {loss_value} at epoch {epoch}, step {step} "
                                 f"(diverged: lower optim.lr or raise warmup)")


def lr_factor(step: int, total: int, warmup_ratio: float, min_lr_ratio: float, schedule: str) -> float:
    """Linear warmup to 1, then linear or cosine decay to min_lr_ratio at the last step."""
    warmup = int(warmup_ratio * total)
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    shape = 1 - progress if schedule == "linear" else 0.5 * (1 + math.cos(math.pi * progress))
    return min_lr_ratio + (1 - min_lr_ratio) * shape


def make_optimizer(model: nn.Module, cfg: OptimConfig, device: torch.device | None = None) -> torch.optim.AdamW:
    """AdamW; biases and norm weights get no weight decay (the usual BERT recipe).

    On CUDA the fused kernel (one launch for all parameters); on CPU torch's default, unchanged.
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = {"fused": True} if device is not None and device.type == "cuda" else {}
    return torch.optim.AdamW(groups, lr=cfg.lr, **fused)


def make_scheduler(optimizer, cfg: OptimConfig, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total_steps, cfg.warmup_ratio, cfg.min_lr_ratio, cfg.schedule))


def train_epoch(model, objective, batches, optimizer, scheduler, cfg: OptimConfig, device, on_step=None) -> dict:
    """One pass over `batches` with gradient accumulation and clipping.

    No host synchronisation per step: the loss is summed on the device and returned as a tensor
    (`loss_sum`, read once per epoch by `host_loss`); token counts come from the host-side masks
    before the copy. Returns loss_sum, batches, real and padded token counts and seconds.
    """
    model.train()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)  # as the host float sum it replaces
    n_batches, tokens, padded, start = 0, 0, 0, time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    for i, batch in enumerate(batches, start=1):
        mask = batch["attention_mask"]
        tokens, padded = tokens + int(mask.sum()), padded + mask.numel()  # host tensor: no device sync
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with autocast(device, cfg.mixed_precision):
            loss = objective.loss(model, batch)
        (loss / cfg.grad_accum).backward()
        loss_sum += loss.detach()
        n_batches += 1
        if i % cfg.grad_accum == 0:
            _optimizer_step(model, optimizer, scheduler, cfg.clip_norm, on_step)
    if n_batches % cfg.grad_accum:  # flush a partial accumulation at the epoch's end
        _optimizer_step(model, optimizer, scheduler, cfg.clip_norm, on_step)
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # the epoch's time covers its queued kernels
    return {"loss_sum": loss_sum, "batches": n_batches, "tokens": tokens, "padded_tokens": padded,
            "seconds": time.perf_counter() - start}


def host_loss(loss_sum: torch.Tensor, n_batches: int, epoch: int, step: int) -> float:
    """The one place the accumulated training loss reaches the host (once per epoch): the mean
    loss per batch; a non-finite one stops the cell, named by `epoch` and `step` (optimizer steps so far)."""
    value = float(loss_sum) / max(1, n_batches)
    check_finite(value, epoch, step)
    return value


def _optimizer_step(model, optimizer, scheduler, clip_norm: float, on_step=None) -> None:
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], clip_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    if on_step:
        on_step()


def fit(cfg: CellConfig, model: nn.Module, loaders: Loaders, objective, device: torch.device,
        report: Callable[[dict, dict | None], None], resume: dict | None = None,
        on_step: Callable[[int], None] | None = None) -> dict:
    """Train for cfg.optim.epochs, report each epoch (with a resumable state), then the final metrics.

    `report(metrics, state)` receives per-epoch metrics and the full state to checkpoint (live
    tensors: save or copy it before returning); the final call carries the final metrics (test
    scores for classification) and state=None. The model is left holding the weights the cell
    passes on: the best-on-validation ones for classification, the last ones for MLM.
    """
    optim = cfg.optim
    core = getattr(model, "module", model)  # unwrapped under DDP: portable state dicts, direct attributes
    optimizer = make_optimizer(model, optim, device)
    if optim.compile:  # in place: the state-dict keys (checkpoints, exports) stay those of the plain encoder
        core.encoder.compile(dynamic=True)
    scheduler = make_scheduler(optimizer, optim, optim.epochs * loaders.steps_per_epoch)
    progress = Progress()
    if resume is not None:
        core.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        progress = resume["progress"]
        torch.set_rng_state(resume["rng"])  # dropout masks continue as if never interrupted
        forwards = resume.get("attention_forwards", resume.get("lsh_step"))  # lsh_step: older checkpoints
        if forwards is not None:  # e.g. LSH hashes continue from the same forward count
            set_forward_count(core.encoder, forwards)
        if device.type == "cuda" and resume.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(resume["cuda_rng"], device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    spent = {M.EVAL_TIME_S: 0.0, M.CHECKPOINT_TIME_S: 0.0}  # this run's, for `raygrid bench loop`

    def step_hook():
        progress.step += 1
        if on_step:
            on_step(progress.step)

    for epoch in range(progress.epoch, optim.epochs):
        set_bottom_frozen(core, cfg.model.n_freeze, frozen=epoch < frozen_epochs(cfg.model.n_freeze, optim.epochs))
        objective.start_epoch(epoch, device)
        stats = train_epoch(model, objective, loaders.train(epoch), optimizer, scheduler, optim, device, step_hook)
        train_loss = host_loss(stats["loss_sum"], stats["batches"], epoch, progress.step)  # checked: finite
        with _timed(spent, M.EVAL_TIME_S):
            val = objective.evaluate(model, loaders.validation(), device, optim.mixed_precision)
        check_finite(val["loss"], epoch, progress.step, what="validation loss")
        progress.epoch, progress.train_seconds = epoch + 1, progress.train_seconds + stats["seconds"]
        progress.train_tokens += stats["tokens"]
        progress.padded_tokens += stats["padded_tokens"]
        progress.last_val = dict(val)
        score = objective.score(val)
        if score > progress.best_score:
            progress.best_score, progress.best_epoch, progress.best_val = score, epoch, dict(val)
            if objective.scores_test:  # test scores the best-on-validation weights
                progress.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in core.state_dict().items()}
        metrics = {"epoch": epoch, M.TRAIN_LOSS: train_loss, M.VAL_LOSS: val["loss"],
                   **{f"{objective.metric_prefix}{k}": v for k, v in val.items() if k != "loss"},  # M.VAL_*
                   M.EPOCH_TIME_S: stats["seconds"], M.LR: scheduler.get_last_lr()[0]}
        state = {"model": core.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "progress": copy.copy(progress), "rng": torch.get_rng_state(),
                 "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                 "attention_forwards": forward_count(core.encoder)}
        with _timed(spent, M.CHECKPOINT_TIME_S):  # the report saves the state: a checkpoint
            report(metrics, state)

    final = {M.BEST_EPOCH: progress.best_epoch, "final": 1, **throughput(progress)}
    if objective.scores_test:
        core.load_state_dict(progress.best_weights)
        with _timed(spent, M.EVAL_TIME_S):
            test = objective.evaluate(model, loaders.test(), device, optim.mixed_precision)
        final.update({M.TEST_F1_MACRO: test["f1_macro"], M.TEST_ACCURACY: test["accuracy"], M.TEST_LOSS: test["loss"],
                      M.BEST_VAL_F1_MACRO: progress.best_val["f1_macro"]})
    else:
        final.update({M.BEST_VAL_LOSS: progress.best_val["loss"], M.FINAL_VAL_LOSS: progress.last_val["loss"],
                      M.FINAL_VAL_PERPLEXITY: progress.last_val["perplexity"]})
    # Peaks over the whole cell, evaluation and test included (read last).
    final.update({M.PEAK_GPU_MEM_MB: peak_gpu_mem_mb(device), M.PEAK_HOST_MEM_MB: peak_host_mem_mb(), **spent})
    report(final, None)
    return final


@contextlib.contextmanager
def _timed(totals: dict, key: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        totals[key] += time.perf_counter() - start


def throughput(progress: Progress) -> dict:
    """Per-cell time and token figures: training time, mean epoch time, real and padded tokens/s."""
    seconds = max(progress.train_seconds, 1e-9)
    return {M.TRAIN_TIME_S: progress.train_seconds, M.EPOCH_TIME_MEAN_S: progress.train_seconds / max(1, progress.epoch),
            M.TOKENS_PER_S: progress.train_tokens / seconds, M.PADDED_TOKENS_PER_S: progress.padded_tokens / seconds,
            M.PADDING_RATIO: progress.padded_tokens / max(1, progress.train_tokens)}
