"""Attention variants as records: params model, kernel, transformers adapter, per-layer state, FLOPs, bench rows.

Every consumer (config, model, training, trial, cost, bench, plan) looks a variant up here and never
branches on its kind. Each variant is a torch-free record in `raygrid.attention.variants` plus a kernel
module the record names and loads lazily, so importing this package (or the grid config) loads no torch.
`raygrid.attention.hf_bridge` plugs the records into transformers and `raygrid.attention.bound` binds a
cell's record to its params once, at model build (both torch; imported on demand).

    get("favor").params(nb_features=128)       a record and its params model
    variant_of(cell.config.attention).flops    the record of a params object
    AttentionParams                            the config's union of all params models, tagged by `kind`
    FavorParams, LinearParams, ...             each record's params model, by class name
"""
from __future__ import annotations

from raygrid.attention.record import Variant
from raygrid.attention.registry import default_params, get, kinds, params_union, records, validated, variant_of

__all__ = ["AttentionParams", "Variant", "default_params", "get", "kinds", "params_union", "validated",
           "records", "variant_of"]


def __getattr__(name: str):
    """`AttentionParams` and every record's params model by class name (looked up, so no variant is named here)."""
    if name == "AttentionParams":
        return params_union()
    for record in records():
        if record.params.__name__ == name:
            return record.params
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
