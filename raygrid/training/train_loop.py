"""Training of one cell: epochs of AdamW steps, validation, best checkpoint, test scoring.

The objective (raygrid.training.objectives: classification or masked-language modelling) decides the loss,
the evaluation and which epoch is best; an MLM cell may have no validation split (the study's Wikipedia
stage): its epochs then report no val_* metrics and its last epoch is its best. The schedule lives in
raygrid.training.schedule, the precision (bf16, fp16 with loss scaling, fp32) in raygrid.training.precision. Framework-free: batches come from callables and results
leave through `report`, so the same code runs inside a Ray Train worker (raygrid.orchestration.trial) and in
plain unit tests.
"""
from __future__ import annotations

import contextlib
import copy
import math
import time
from functools import partial
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from torch import nn

from raygrid.spec.config import CellConfig, OptimConfig
from raygrid.training import metric_names as M
from raygrid.training.metrics import peak_gpu_mem_mb, peak_host_mem_mb
from raygrid.model.encoder import frozen_epochs, set_bottom_frozen
from raygrid.training.precision import Precision
from raygrid.training.schedule import lr_factor, make_scheduler  # noqa: F401 (lr_factor: imported from here too)

Batch = dict[str, torch.Tensor]


@dataclass
class Loaders:
    """Where batches come from: train(epoch) reshuffles per epoch; eval splits are fixed."""

    train: Callable[[int], Iterable[Batch]]
    validation: Callable[[], Iterable[Batch]] | None  # None: no validation split (MLM only)
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
    skipped_steps: int = 0  # optimizer steps fp16's GradScaler skipped (overflow); not counted in `step`
    last_train_loss: float = math.nan
    best_weights: dict | None = field(default=None, repr=False)


class NonFiniteLossError(FloatingPointError):
    """A cell diverged: its loss became nan or inf (the cell fails; the grid goes on)."""


def check_finite(loss_value: float, epoch: int, step: int, what: str = "loss") -> None:
    """Stop a diverging cell where its loss reaches the host, so no nan epoch is reported, kept or chosen as best."""
    if not math.isfinite(loss_value):
        raise NonFiniteLossError(f"{what} is {loss_value} at epoch {epoch}, step {step} "
                                 f"(diverged: lower optim.lr or raise warmup)")


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


def train_epoch(model, objective, batches, optimizer, scheduler, cfg: OptimConfig, device, on_step=None,
                precision: Precision | None = None, on_progress: Callable[[int, float], None] | None = None) -> dict:
    """One pass over `batches` with gradient accumulation and clipping, at `precision` (default: cfg's on `device`).

    After each optimizer step taken, `on_step()` then `on_progress(real tokens, seconds)` (the epoch's so far).

    No host synchronisation per step (fp16's loss scaling adds one per optimizer step): the loss is
    summed on the device and returned as a tensor (`loss_sum`, read once per epoch by `host_loss`);
    token counts come from the host-side masks before the copy. Returns loss_sum, batches, real and
    padded token counts, seconds and the optimizer steps fp16's scaler skipped.
    """
    precision = precision or Precision.for_device(cfg.precision, device)
    model.train()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)  # as the host float sum it replaces
    n_batches, tokens, padded, skipped, start = 0, 0, 0, 0, time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    for i, (batch, last) in enumerate(_flag_last(batches), start=1):
        mask = batch["attention_mask"]
        tokens, padded = tokens + int(mask.sum()), padded + mask.numel()  # host tensor: no device sync
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        steps_now = i % cfg.grad_accum == 0 or last  # a partial accumulation at the epoch's end steps too
        with _sync_unless(model, steps_now):  # around the backward too: DDP's all-reduce hooks fire there
            with precision.autocast():
                loss = objective.loss(model, batch)
            precision.backward(loss / cfg.grad_accum)
        loss_sum += loss.detach()
        n_batches += 1
        if steps_now:
            taken = _optimizer_step(model, optimizer, scheduler, precision, cfg.clip_norm, on_step)
            skipped += not taken
            if taken and on_progress:
                on_progress(tokens, time.perf_counter() - start)  # host figures only: no device sync
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # the epoch's time covers its queued kernels
    return {"loss_sum": loss_sum, "batches": n_batches, "tokens": tokens, "padded_tokens": padded,
            "seconds": time.perf_counter() - start, "skipped_steps": skipped}


def _flag_last(batches: Iterable[Batch]):
    """(batch, is_last) pairs, one batch read ahead: the loaders are iterables of unknown length, and the
    epoch's last micro-batch must sync gradients under DDP even when its accumulation is partial."""
    iterator = iter(batches)
    try:
        current = next(iterator)
    except StopIteration:
        return
    for following in iterator:
        yield current, False
        current = following
    yield current, True


def _sync_unless(model, steps_now: bool):
    """DDP all-reduces gradients in every backward unless under `no_sync`; only the backward before an
    optimizer step needs it (the others would all-reduce partial sums that the next one redoes)."""
    no_sync = getattr(model, "no_sync", None)
    return contextlib.nullcontext() if steps_now or no_sync is None else no_sync()


def host_loss(loss_sum: torch.Tensor, n_batches: int, epoch: int, step: int) -> float:
    """The one place the accumulated training loss reaches the host (once per epoch): the mean
    loss per batch; a non-finite one stops the cell, named by `epoch` and `step` (optimizer steps so far)."""
    value = float(loss_sum) / max(1, n_batches)
    check_finite(value, epoch, step)
    return value


def _optimizer_step(model, optimizer, scheduler, precision: Precision, clip_norm: float, on_step=None) -> bool:
    """Clip, step and advance the schedule; False when fp16's scaler skipped the step (schedule and
    step count stay: a skipped step is no update, as in the study's loop)."""
    taken = precision.step([p for p in model.parameters() if p.grad is not None], optimizer, clip_norm)
    optimizer.zero_grad(set_to_none=True)
    if taken:
        scheduler.step()
        if on_step:
            on_step()
    return taken


def fit(cfg: CellConfig, model: nn.Module, loaders: Loaders, objective, device: torch.device,
        report: Callable[[dict, dict | None], None], resume: dict | None = None,
        on_step: Callable[[int], None] | None = None,
        on_progress: Callable[[int, int, int, float], None] | None = None) -> dict:
    """Train for cfg.optim.epochs, report each epoch (with a resumable state), then the final metrics.

    `report(metrics, state)` receives per-epoch metrics and the full state to checkpoint (live
    tensors: save or copy it before returning); the final call carries the final metrics (test
    scores for classification) and state=None. The model is left holding the weights the cell
    passes on: the best-on-validation ones for classification, the last ones for MLM. Without a
    validation split (`loaders.validation` None: MLM only) epochs report no val_* metrics, the
    last epoch is the best, and the cell's loss is its `final_train_loss`. After each optimizer
    step, `on_progress(step, total steps, real tokens, seconds of training, seconds of validation still
    due)`, the cell's so far
    (raygrid.training.progress throttles it into progress reports).
    """
    optim = cfg.optim
    if loaders.validation is None and objective.scores_test:
        raise ValueError("data: a classification cell needs a validation split (it picks the weights test scores)")
    core = getattr(model, "module", model)  # unwrapped under DDP: portable state dicts, direct attributes
    optimizer = make_optimizer(model, optim, device)
    if optim.compile:  # in place: the state-dict keys (checkpoints, exports) stay those of the plain encoder
        core.encoder.compile(dynamic=True)
    scheduler = make_scheduler(optimizer, optim, optim.epochs * loaders.steps_per_epoch)
    precision = Precision.for_device(optim.precision, device)
    progress = Progress() if resume is None else _resume(resume, core, optimizer, scheduler, precision, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    spent = {M.EVAL_TIME_S: 0.0, M.CHECKPOINT_TIME_S: 0.0}  # this run's, for `raygrid bench loop`

    redraw = core.attention.on_step  # None unless the cell's attention changes after steps (FAVOR+ redraws)

    def step_hook():
        progress.step += 1
        for hook in (redraw, on_step):
            if hook:
                hook(progress.step)

    evaluation_left = partial(_evaluation_left, progress, progress.epoch, optim.epochs, spent,
                              loaders.validation is not None)
    for epoch in range(progress.epoch, optim.epochs):
        set_bottom_frozen(core, cfg.model.n_freeze, frozen=epoch < frozen_epochs(cfg.model.n_freeze, optim.epochs))
        objective.start_epoch(epoch, device)
        stats = train_epoch(model, objective, loaders.train(epoch), optimizer, scheduler, optim, device, step_hook,
                            precision, _cell_progress(on_progress, progress, optim.epochs * loaders.steps_per_epoch,
                                                      evaluation_left))
        train_loss = host_loss(stats["loss_sum"], stats["batches"], epoch, progress.step)  # checked: finite
        val = {}
        if loaders.validation is not None:
            with _timed(spent, M.EVAL_TIME_S):
                val = objective.evaluate(model, loaders.validation(), device, precision.name)
            check_finite(val["loss"], epoch, progress.step, what="validation loss")
        _record_epoch(progress, epoch, stats, train_loss, val, objective, core)
        metrics = {"epoch": epoch, M.TRAIN_LOSS: train_loss, **_val_metrics(val, objective.metric_prefix),
                   M.EPOCH_TIME_S: stats["seconds"], M.LR: scheduler.get_last_lr()[0]}
        state = {"model": core.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "scaler": precision.state_dict(),
                 "progress": copy.copy(progress), "rng": torch.get_rng_state(),
                 "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                 **core.attention.checkpoint_state()}  # e.g. LSH's training forwards
        with _timed(spent, M.CHECKPOINT_TIME_S):  # the report saves the state: a checkpoint
            report(metrics, state)

    test = None
    if objective.scores_test:  # the best-on-validation weights score the test split
        core.load_state_dict(progress.best_weights)
        with _timed(spent, M.EVAL_TIME_S):
            test = objective.evaluate(model, loaders.test(), device, precision.name)
    final = _final_metrics(progress, test, precision.name)
    # Peaks over the whole cell, evaluation and test included (read last).
    final.update({M.PEAK_GPU_MEM_MB: peak_gpu_mem_mb(device), M.PEAK_HOST_MEM_MB: peak_host_mem_mb(), **spent})
    report(final, None)
    return final


def _cell_progress(on_progress, progress: Progress, total_steps: int,
                   evaluation_left: Callable[[], float]) -> Callable[[int, float], None] | None:
    """train_epoch's (epoch tokens, epoch seconds) -> on_progress(cell step, total steps, cell tokens, cell seconds,
    seconds of validation still due)."""
    if on_progress is None:
        return None
    return lambda tokens, seconds: on_progress(progress.step, total_steps, progress.train_tokens + tokens,
                                               progress.train_seconds + seconds, evaluation_left())


def _evaluation_left(progress: Progress, first_epoch: int, epochs: int, spent: dict, validates: bool) -> float:
    """Seconds of validation still due in the cell: the epochs left (the running one included) at the mean
    time of this run's validation passes so far (0 before the first, or without validation)."""
    done = progress.epoch - first_epoch  # progress.epoch: the running epoch (it counts finished ones)
    if not validates or done <= 0:
        return 0.0
    return (epochs - progress.epoch) * spent[M.EVAL_TIME_S] / done


def _final_metrics(progress: Progress, test: dict | None, precision: str) -> dict:
    """The cell's end-of-training figures: best epoch, losses and scores, throughput, the precision that ran."""
    final = {M.BEST_EPOCH: progress.best_epoch, "final": 1, M.SKIPPED_STEPS: progress.skipped_steps,
             "precision": precision, **throughput(progress)}  # precision: what ran (fp32 on CPU), a tag
    if math.isfinite(progress.last_train_loss):  # (NaN only for a checkpoint from before the field)
        final[M.FINAL_TRAIN_LOSS] = progress.last_train_loss
    if test is not None:
        final.update({M.TEST_F1_MACRO: test["f1_macro"], M.TEST_ACCURACY: test["accuracy"], M.TEST_LOSS: test["loss"],
                      M.BEST_VAL_F1_MACRO: progress.best_val["f1_macro"]})
    elif progress.last_val:  # MLM with a validation split; without one no val_* number is made up
        final.update({M.BEST_VAL_LOSS: progress.best_val["loss"], M.FINAL_VAL_LOSS: progress.last_val["loss"],
                      M.FINAL_VAL_PERPLEXITY: progress.last_val["perplexity"]})
    return final


def _resume(resume: dict, core: nn.Module, optimizer, scheduler, precision: Precision, device) -> Progress:
    """Restore a checkpointed state (see fit's `state`) into the model, optimizer, schedule and scaler."""
    core.load_state_dict(resume["model"])
    optimizer.load_state_dict(resume["optimizer"])
    scheduler.load_state_dict(resume["scheduler"])
    precision.load_state_dict(resume.get("scaler"))  # fp16's loss scale continues where it was
    torch.set_rng_state(resume["rng"])  # dropout masks continue as if never interrupted
    core.attention.load_checkpoint_state(resume)  # e.g. LSH hashes continue from the same forward count
    if device.type == "cuda" and resume.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(resume["cuda_rng"], device)
    return resume["progress"]


def _record_epoch(progress: Progress, epoch: int, stats: dict, train_loss: float, val: dict, objective,
                  core: nn.Module) -> None:
    """Count the finished epoch into `progress`; keep it as the best when it is (always, without validation)."""
    progress.epoch, progress.train_seconds = epoch + 1, progress.train_seconds + stats["seconds"]
    progress.train_tokens += stats["tokens"]
    progress.padded_tokens += stats["padded_tokens"]
    progress.skipped_steps += stats["skipped_steps"]
    progress.last_train_loss, progress.last_val = train_loss, dict(val)
    if val and objective.score(val) <= progress.best_score:
        return
    progress.best_epoch, progress.best_val = epoch, dict(val)
    progress.best_score = objective.score(val) if val else progress.best_score
    if objective.scores_test:  # test scores the best-on-validation weights
        progress.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in core.state_dict().items()}


def _val_metrics(val: dict, prefix: str) -> dict:
    """An epoch's validation metrics under their names (M.VAL_LOSS, M.VAL_*); {} without validation."""
    if not val:
        return {}
    return {M.VAL_LOSS: val["loss"], **{f"{prefix}{k}": v for k, v in val.items() if k != "loss"}}


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
