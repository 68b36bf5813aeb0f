"""One grid cell on Ray: the Tune trial function (Train driver) and the Train worker loop.

Shape (Ray 2.60, Train V2): the Tune trial runs `train_driver`, which builds a TorchTrainer; its
workers run `train_worker` -> `train_loop.fit` on the cached tokenized splits, which each worker
streams from the cache itself (a folder every node sees, or a storage URI) and
raygrid.training.loaders batches (length-grouped within bounded windows). Metrics flow worker ->
ray.train.report -> TuneReportCallback -> Tune. Like every module of raygrid.orchestration (the only
package that imports ray), it is started by raygrid.orchestration.launch (via .tuner).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import time
from functools import partial
from pathlib import Path

import ray
import ray.train
import ray.tune
import torch
from ray.train.torch import TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback

from raygrid.spec.config import CellConfig
from raygrid.spec.redact import redact
from raygrid.data.cache import PreparedData, tokenizer_location
from raygrid.training import metric_names as M
from raygrid.training.cell_model import build_cell_model
from raygrid.model.encoder import export_pretrained, weights_fingerprint
from raygrid.orchestration.payload import PARAM_KEY, TrialPayload
from raygrid.orchestration.progress_relay import progress_sender
from raygrid.orchestration.prune import prune_finished_run
from raygrid.orchestration.resume import train_run_name
from raygrid.training.loaders import stream_loaders
from raygrid.training.reports import DATA_FROM, EPOCH, FINAL, NODE_ID, WEIGHTS_IN, WEIGHTS_OUT, CellReport
from raygrid.training.train_loop import Loaders, fit

# --- Train worker ------------------------------------------------------------------------------


def train_worker(config: dict) -> None:
    """Per-worker loop: re-validate the cell, build the model, load the splits, fit, report."""
    started_at = time.time()  # against the driver's clock: how long the worker group took to start
    payload = TrialPayload.from_tune(config)
    cfg = payload.config
    data = _cache_entry(payload.data_dir)
    context = ray.train.get_context()
    cpus = payload.resources.cpus_per_worker
    torch.set_num_threads(max(1, round(cpus)))  # no oversubscription of cores
    device = ray.train.torch.get_device()
    started = time.perf_counter()
    with _init_weights(payload.init_checkpoint) as location:
        model, objective = build_cell_model(cfg, data, location, context.get_world_rank())
    driver_started = payload.driver_started if payload.driver_started is not None else started_at
    timings = {M.WORKER_START_S: started_at - driver_started,
               M.MODEL_LOAD_S: time.perf_counter() - started}
    # Lineage evidence: the hash of the encoder weights this cell starts from (an earlier stage's
    # `weights_out` when it is chained).
    weights_in = weights_fingerprint(model.encoder)
    if context.get_world_size() > 1:
        # N_freeze leaves the bottom blocks without gradients for a while; DDP must expect that.
        model = ray.train.torch.prepare_model(
            model, parallel_strategy_kwargs={"find_unused_parameters": cfg.model.n_freeze > 0})
    else:
        model = model.to(device)
    started = time.perf_counter()
    loaders = _loaders(cfg, data, context.get_world_rank(), context.get_world_size(), device)
    timings[M.DATA_LOAD_S] = time.perf_counter() - started
    resume = _load_checkpoint(ray.train.get_checkpoint())
    exporter = partial(_export, model, tokenizer_location(cfg.model)) if cfg.kind == "mlm" else None
    # The node is recorded on the cell's run: which machine ran it, when a result needs explaining.
    node = ray.get_runtime_context().get_node_id()
    report = _Reporter(context.get_world_rank(), exporter,
                       {WEIGHTS_IN: weights_in, NODE_ID: node, DATA_FROM: redact(data.folder), **timings})
    # In-epoch progress: rank 0 alone, out of band (ray.train.report is collective: see progress_relay).
    on_progress = progress_sender(payload.name) if context.get_world_rank() == 0 else None
    fit(cfg, model, loaders, objective, device, report, resume,  # redraws: fit asks the model's bound attention
        on_progress=on_progress)


@contextlib.contextmanager
def _init_weights(uri: str | None):
    """A local folder holding an earlier stage's exported weights (downloaded if it lives remotely)."""
    if uri is None:
        yield None
    elif "://" not in uri and Path(uri).is_dir():
        yield uri  # shared or local storage: read in place
    else:
        with tempfile.TemporaryDirectory() as folder:
            yield ray.train.Checkpoint(path=uri).to_directory(folder)


def _export(model, tokenizer: str, folder: Path) -> str:
    """Save the weights later stages start from; returns their fingerprint."""
    export_pretrained(model, folder, tokenizer)
    return weights_fingerprint(getattr(model, "module", model).encoder)


def _cache_entry(folder: str) -> PreparedData:
    """The cell's cache entry, read by this worker from where it lives; a clear error when this node cannot see it."""
    try:
        return PreparedData.load(folder)
    except (FileNotFoundError, OSError) as err:
        node = ray.util.get_node_ip_address()
        raise RuntimeError(f"cache entry {folder} is not readable on node {node} ({type(err).__name__}): trials "
                           f"read the cache where it lives; give --cache-dir on storage every node reads "
                           f"(s3://..., gs://..., or a path mounted on every node)") from None


def _loaders(cfg: CellConfig, data: PreparedData, rank: int, world_size: int, device: torch.device) -> Loaders:
    """This worker's batches, streamed from the cache's Parquet files by raygrid.training.loaders.

    Each epoch every rank streams the whole training split, one row group at a time, plans every
    window as all ranks do and keeps its own batches (raygrid.data.stream_batches); it streams
    validation and test whole. Nothing passes through the driver or the object store, and no
    process holds more than a window of rows.

    Why not Ray Data's `streaming_split`: it deals blocks to ranks as they ask, so a rank's rows
    (and so its batches) are not a function of (seed, epoch) and a resumed cell would not replay
    its order; each rank would sort only its own rows (padding 1.17x instead of 1.04x on
    Hyperpartisan 4096 / 8 with 4 workers); and its read tasks need CPUs the training workers hold
    (a whole-CPU listing task starved a grid under test).
    """
    return stream_loaders(cfg, data.stream_split, data.split_rows, data.meta["pad_token_id"], rank, world_size,
                          pin_memory=device.type == "cuda")


class _Reporter:
    """fit's reports -> typed CellReports -> Ray; rank 0 attaches the resumable state, and at the end the
    exported weights.

    fit calls it on every rank alike (ray.train.report is collective: every worker must call it as
    often as the others). The final checkpoint of an exporting cell also holds the last epoch's
    state, so a worker restarted after it resumes straight at the final report instead of training again.
    """

    def __init__(self, rank: int, exporter, extra: dict):
        self.rank, self.exporter, self.extra = rank, exporter, extra
        self.last_state: dict | None = None

    def __call__(self, metrics: dict, state: dict | None) -> None:
        if state is None:  # fit's last call: the cell's final metrics
            report = CellReport.of(FINAL, {**metrics, **self.extra})
            if self.exporter is not None and self.rank == 0:
                with tempfile.TemporaryDirectory() as folder:
                    report = report.with_tags(**{WEIGHTS_OUT: self.exporter(Path(folder))})
                    if self.last_state is not None:
                        torch.save(self.last_state, os.path.join(folder, "state.pt"))
                    ray.train.report(report.to_wire(), checkpoint=ray.train.Checkpoint.from_directory(folder))
                return
            ray.train.report(report.to_wire())
            return
        report = CellReport.of(EPOCH, metrics, step=int(metrics["epoch"]))
        if self.rank != 0:
            ray.train.report(report.to_wire())
            return
        self.last_state = state  # live tensors: after the last epoch they hold exactly the final state
        with tempfile.TemporaryDirectory() as folder:
            torch.save(state, os.path.join(folder, "state.pt"))
            ray.train.report(report.to_wire(), checkpoint=ray.train.Checkpoint.from_directory(folder))


def _load_checkpoint(checkpoint) -> dict | None:
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        return torch.load(os.path.join(folder, "state.pt"), map_location="cpu", weights_only=False)


# --- Tune trial = Train driver -----------------------------------------------------------------


def train_driver(config: dict) -> None:
    """One Tune trial: a TorchTrainer for one cell, whose workers stream the cell's cached splits
    from the cache themselves (see _loaders): the trial reads no data."""
    payload = TrialPayload.from_tune(config)
    if payload.config.kind == "tfidf":
        return _tfidf_cell(payload.config)
    res = payload.resources
    payload = payload.model_copy(update={"driver_started": time.time()})  # workers time their group's start from here
    # Train's controller polls its workers every 2 s by default, so it sees each report and the end
    # of the run up to 2 s late: the trial ends ~1 s later on average, and a short cell pays it at
    # every epoch's report. Polling every 0.5 s costs the controller little; Ray Train hands this
    # variable on to the controller it starts. A value the user set wins.
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={PARAM_KEY: payload.to_tune()},
        scaling_config=ray.train.ScalingConfig(
            num_workers=res.workers_per_trial, use_gpu=payload.use_gpu,
            resources_per_worker={"CPU": res.cpus_per_worker, **({"GPU": res.gpus_per_worker} if payload.use_gpu else {})}),
        # A name from the cell's identity (never the trial id or a timestamp): a rerun after a crash restores
        # the cell from its last checkpoint (raygrid.orchestration.resume).
        run_config=ray.train.RunConfig(
            name=train_run_name(ray.tune.get_context().get_experiment_name(), payload.name,
                                payload.config.model_dump(mode="json")),
            storage_path=payload.storage_path, callbacks=[TuneReportCallback()],
            failure_config=ray.train.FailureConfig(max_failures=res.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1)),
    )
    result = trainer.fit()
    if not res.keep_checkpoints:  # finished: resume state is dead weight (raygrid.orchestration.prune)
        exported = result.checkpoint.path if payload.config.kind == "mlm" and result.checkpoint else None
        prune_finished_run(result.filesystem, result.path, keep=exported)


def _tfidf_cell(cfg: CellConfig) -> None:
    """The TF-IDF + LR baseline: no workers, it runs in the trial itself on the cell's raw splits."""
    from raygrid.training.baseline import tfidf_lr
    from raygrid.data.sources import load_raw
    from raygrid.data.splits import apply_split_policy

    raw = load_raw(cfg.data)
    splits = apply_split_policy(raw, cfg.data)
    scores = tfidf_lr(splits["train"], splits["validation"], splits["test"], seed=cfg.seed,
                      num_labels=len(raw.label_names))
    epoch = {M.VAL_F1_MACRO: scores[M.VAL_F1_MACRO], M.VAL_ACCURACY: scores[M.VAL_ACCURACY]}
    ray.tune.report(CellReport(EPOCH, epoch, step=0).to_wire())
    final = {**scores, M.BEST_VAL_F1_MACRO: scores[M.VAL_F1_MACRO], M.PEAK_GPU_MEM_MB: 0.0}
    ray.tune.report(CellReport.of(FINAL, final).to_wire())
