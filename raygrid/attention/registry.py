"""The registry of attention variants: every record module in `raygrid.attention.variants`.

Adding a variant = dropping `variants/<kind>.py` (a `VARIANT = Variant(...)` record) and its kernel
module in; nothing else names it. Discovery runs once, on first use, and imports only the torch-free
record modules. Order: the reference (softmax) first, then by kind, so tables and unions are stable.
"""
from __future__ import annotations

import functools
import importlib
import pkgutil
import typing
from typing import Annotated, Union

from pydantic import Field, TypeAdapter

from raygrid.attention.record import Variant

VARIANT_PACKAGE = "raygrid.attention.variants"
DEFAULT_KIND = "softmax"  # the attention of a cell that does not say (exact attention)


@functools.cache
def records() -> tuple[Variant, ...]:
    """All records, reference first, then by kind."""
    package = importlib.import_module(VARIANT_PACKAGE)
    found = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{VARIANT_PACKAGE}.{info.name}")
        record = getattr(module, "VARIANT", None)
        if not isinstance(record, Variant):
            raise TypeError(f"{module.__name__}: an attention variant module defines VARIANT = Variant(...)")
        _check(record, info.name)
        found.append(record)
    return tuple(sorted(found, key=lambda v: (not v.reference, v.kind)))


def _check(record: Variant, module_name: str) -> None:
    """A record's kind is its module's name and its params model's `kind` literal."""
    literal = typing.get_args(record.params.model_fields["kind"].annotation)
    if record.kind != module_name or literal != (record.kind,):
        raise ValueError(f"{VARIANT_PACKAGE}.{module_name}: kind {record.kind!r} must equal the module name "
                         f"and {record.params.__name__}.kind's Literal (got {literal})")


def reference_kind() -> str:
    """The kind every other variant is measured against (softmax): the record marked `reference`."""
    return next(record.kind for record in records() if record.reference)


def kinds() -> tuple[str, ...]:
    """The YAML values of `attention.kind`."""
    return tuple(v.kind for v in records())


def get(kind: str) -> Variant:
    """The record registered under `kind`; KeyError lists the known kinds."""
    for record in records():
        if record.kind == kind:
            return record
    raise KeyError(f"unknown attention kind {kind!r}; known: {sorted(kinds())}")


def variant_of(params) -> Variant:
    """The record of a params object (or a {'kind': ...} dict)."""
    return get(params["kind"] if isinstance(params, dict) else params.kind)


@functools.cache
def params_union():
    """The pydantic type of a grid's `attention` value: a union of every record's params, tagged by `kind`."""
    members = tuple(v.params for v in records())
    return Annotated[Union[members], Field(discriminator="kind")]  # noqa: UP007 - built from a tuple


def validated(params):
    """`params` as its variant's params model (dicts are validated)."""
    if isinstance(params, tuple(v.params for v in records())):
        return params
    return TypeAdapter(params_union()).validate_python(params)


def cell_problem(params, weights: str, parent=None) -> str | None:
    """Why `params` cannot start from `weights` ("scratch" | "checkpoint" | "stage", `parent`: that stage
    cell's attention params if known), as the variant's record says; None when it can."""
    check = variant_of(params).cell_check
    return check(params, weights, parent) if check is not None else None


def default_params():
    """The params of a cell that names no attention: exact softmax with its defaults."""
    return get(DEFAULT_KIND).params()
