"""The typed contract between `raygrid run` and a trial: what one Tune trial receives.

The brief's flow: YAML -> strict models -> Tune `param_space` (plain JSON) -> the trial and its
workers re-validate. `TrialPayload.to_tune()` is what launch puts into the param_space;
`TrialPayload.from_tune()` is how the callback, the trial driver and every worker read it back,
so nothing downstream indexes raw dicts by string keys.
"""
from __future__ import annotations

from typing import Any

from pydantic import Field

from raygrid.spec.config import CellConfig, Resources, Strict
from raygrid.spec.redact import redact_tree

# The key of the payload in Tune's param_space ({"cell": grid_search([...])}) and trial.config.
PARAM_KEY = "cell"


class TrialPayload(Strict):
    """One cell as a trial: its resolved config and where and how it runs."""

    name: str  # the cell's name: Tune trial name, MLflow run name
    config: CellConfig
    axis: dict[str, str]  # axis key -> short label of its value (the run's `axis.*` params)
    data_dir: str | None = None  # the tokenized cache entry; None for tfidf (it reads the raw splits)
    resources: Resources
    use_gpu: bool
    storage_path: str  # where Ray Train keeps this trial's checkpoints (and MLM cells' exported weights)
    init_checkpoint: str | None = None  # a parent cell's exported weights (chained stages)
    skipped_rows: int = Field(0, ge=0)  # rows data.bad_rows: skip dropped from this cell's data
    # Set by the trial driver just before starting its workers: they time their group's start from it.
    driver_started: float | None = None

    def to_tune(self) -> dict[str, Any]:
        """Plain JSON for Tune's param_space (Tune deep-copies and serializes it, and writes it under storage).

        URI credentials are redacted (raygrid.spec.redact) when the trial reads the tokenized cache
        (`data_dir`), as it never opens `data.path` then. A TF-IDF cell reads its raw data in the trial,
        so its payload keeps the URI as written (README: Security).
        """
        payload = self.model_dump(mode="json")
        if self.data_dir is not None:
            payload["config"] = redact_tree(payload["config"])
        return payload

    @classmethod
    def from_tune(cls, config: dict[str, Any]) -> "TrialPayload":
        """The payload of a trial's `config` (as Tune hands it to a trial or a callback), re-validated."""
        return cls.model_validate(config[PARAM_KEY])
