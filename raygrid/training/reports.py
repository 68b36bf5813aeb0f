"""What a cell's worker tells the `raygrid run` process, in one typed form (torch- and ray-free).

A `CellReport` is built by the worker (raygrid.orchestration.trial) and read back by the Tune
callbacks (raygrid.orchestration.tune_callback, .console). On the wire Tune needs a flat dict of
scalars: `to_wire` makes it and `from_wire` reads it, here and nowhere else, so no other module
sniffs keys such as "final" or "epoch". Three kinds:

- epoch: after each epoch; `step` is the epoch (0-based), metrics are metric_names.EPOCH_METRICS;
- progress: inside an epoch, every ~30 s of training; `step` is the cell's optimizer step,
  metrics are metric_names.PROGRESS_METRICS (it never travels through Tune: see trial._Progress);
- final: once, at the end; metrics are metric_names.CELL_METRICS, tags the strings below.

Reading keeps only the names metric_names lists for the kind (Tune adds its own keys to every
result: timestamps, iteration counters), so a name missing there is never recorded.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from raygrid.training import metric_names as M

EPOCH, PROGRESS, FINAL = "epoch", "progress", "final"
KINDS = (EPOCH, PROGRESS, FINAL)
_NAMES = {EPOCH: M.EPOCH_METRICS, PROGRESS: M.PROGRESS_METRICS, FINAL: M.CELL_METRICS}

# Wire keys of the report itself (not metrics).
KIND_KEY, STEP_KEY = "report_kind", "report_step"
# String facts of a final report (recorded as run tags, not metrics).
WEIGHTS_IN = "weights_in"  # fingerprint of the encoder weights the cell started from
WEIGHTS_OUT = "weights_out"  # fingerprint of the weights an MLM cell exported
NODE_ID = "node_id"  # the Ray node that ran the cell
DATA_FROM = "data_from"  # the cache entry the workers streamed their splits from (credentials redacted)
PRECISION = "precision"  # what ran (fp32 on CPU whatever was asked)
CHECKPOINT_PATH = "checkpoint_path"  # added on the wire by Ray's TuneReportCallback, never by raygrid
TAGS = (WEIGHTS_IN, WEIGHTS_OUT, NODE_ID, DATA_FROM, PRECISION, CHECKPOINT_PATH)


@dataclass(frozen=True)
class CellReport:
    kind: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    step: int = 0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"report kind {self.kind!r} is none of {', '.join(KINDS)}")
        # own copies (plain dicts: a report is pickled on its way to the driver)
        object.__setattr__(self, "metrics", dict(self.metrics))
        object.__setattr__(self, "tags", dict(self.tags))

    @classmethod
    def of(cls, kind: str, values: Mapping, step: int = 0) -> CellReport:
        """A report from a mixed dict (as fit's): numbers are metrics, strings are tags, the rest is dropped
        (fit's own "epoch" and "final" keys: the kind and step say it)."""
        metrics = {k: v for k, v in values.items() if _is_number(v) and k not in ("epoch", "final")}
        tags = {k: v for k, v in values.items() if isinstance(v, str)}
        return cls(kind, metrics, tags, step)

    def with_tags(self, **tags: str | None) -> CellReport:
        return CellReport(self.kind, self.metrics, {**self.tags, **{k: v for k, v in tags.items() if v}}, self.step)

    def to_wire(self) -> dict:
        return {KIND_KEY: self.kind, STEP_KEY: self.step, **self.metrics, **self.tags}

    @classmethod
    def from_wire(cls, result: Mapping) -> CellReport | None:
        """The report in a Tune result; None for a result raygrid did not make."""
        kind = result.get(KIND_KEY)
        if kind not in KINDS:
            return None
        metrics = {k: result[k] for k in _NAMES[kind] if _is_number(result.get(k))}
        tags = {k: result[k] for k in TAGS if isinstance(result.get(k), str) and result[k]}
        return cls(kind, metrics, tags, int(result.get(STEP_KEY, 0)))


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
