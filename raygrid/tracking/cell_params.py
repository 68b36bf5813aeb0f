"""Which config values a cell's run records as MLflow params: those that apply to its kind.

A run's params are what MLflow's run table and compare view show, so they must describe what the
cell did: a fine-tuning cell has no `mlm.*` (the MLM objective is not used), an MLM cell no
classification head (`model.pooling`, `model.head`, `model.p_drop`) and no `model.n_freeze` (an MLM cell trains
every layer), the TF-IDF baseline no encoder, attention or optimizer. The attention section holds
only its variant's fields already (a discriminated union). A value left unset (None: "the
default", "all rows") is omitted rather than recorded as the string "None". The complete resolved
config, unset values included, is the run's `config.yaml` artifact.
"""
from __future__ import annotations

import yaml

from raygrid.spec.dotted import flatten
from raygrid.spec.redact import redact, redact_tree

# Dotted prefixes that do not apply to a cell of the kind, by kind.
NOT_APPLICABLE = {
    "finetune": ("mlm.",),
    "mlm": ("model.pooling", "model.head", "model.p_drop", "model.n_freeze"),
    "tfidf": ("model.", "attention.", "optim.", "mlm."),
}
MAX_VALUE = 6000  # MLflow's limit on a param value (characters)


def applies(key: str, kind: str) -> bool:
    """Whether the dotted config `key` means something for a cell of `kind`."""
    # "model." names a whole section (and the section itself, when it is unset); "model.pooling" one key.
    return not any(key == p.rstrip(".") or (p.endswith(".") and key.startswith(p)) for p in NOT_APPLICABLE.get(kind, ()))


def cell_params(config: dict, axis_values: dict[str, str]) -> dict[str, str]:
    """`axis.*` (the cell's axis labels) and the resolved config's values that apply to its kind, as strings."""
    kind = config.get("kind", "finetune")
    params = {f"axis.{k}": v for k, v in axis_values.items() if v is not None}
    params.update({k: v for k, v in flatten(config).items() if v is not None and applies(k, kind)})
    return {k: redact(str(v))[:MAX_VALUE] for k, v in params.items()}  # no URI credentials in MLflow


def unset_keys(config: dict) -> list[str]:
    """The config keys that apply to the cell's kind but are unset (None), so not among its params.

    Recorded as a tag: raygrid.orchestration.finished tells "set since" from "a key raygrid added since".
    """
    kind = config.get("kind", "finetune")
    return [k for k, v in flatten(config).items() if v is None and applies(k, kind)]


def config_yaml(config: dict) -> str:
    """The cell's resolved config as YAML, in the config's own key order; loads back with CellConfig."""
    return yaml.safe_dump(redact_tree(config), sort_keys=False, allow_unicode=True)  # no URI credentials
