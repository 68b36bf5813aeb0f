"""Close-match suggestions for refused names: `unknown key; did you mean 'n_freeze'?`.

`known_keys` walks the config models along a validation error's location (through optional values,
lists, dict values and the `kind`-tagged attention variants) to the keys valid beside the bad one,
so a typo in the grid file, in an axis key or in a dotted command-line override gets the same hint.
"""
from __future__ import annotations

import difflib
import types
from typing import Annotated, Any, Iterable, Union, get_args, get_origin

from pydantic import BaseModel

# Keys a cell's base may hold besides CellConfig's fields (raygrid.spec.grid.make_cell takes them out).
CELL_EXTRAS = ("resources",)


def did_you_mean(word: Any, candidates: Iterable[str]) -> str:
    """`; did you mean 'x'?` for the closest candidate (difflib), or "" when none is close."""
    match = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def known_keys(root_name: str, loc: tuple) -> list[str]:
    """The keys valid at `loc[-1]`'s place under the config model named `root_name` ([] when unknown)."""
    root = _models().get(root_name)
    if root is None or not loc:
        return []
    nodes: list[Any] = [root]
    for part in loc[:-1]:
        nodes = [step for node in nodes for step in _step(node, part)]
    keys = {key for node in nodes for member in _members(node) if _is_model(member) for key in member.model_fields}
    if root_name == "CellConfig" and len(loc) == 1:
        keys.update(CELL_EXTRAS)
    return sorted(keys)


def _models() -> dict[str, type[BaseModel]]:
    """raygrid's pydantic models by class name (a ValidationError names its model by `title`)."""
    found, todo = {}, list(BaseModel.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.startswith("raygrid."):
            found.setdefault(cls.__name__, cls)
    return found


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _members(tp: Any) -> list[Any]:
    """A type with Annotated, Optional and unions unwrapped into its alternatives."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _members(get_args(tp)[0])
    if origin in (Union, types.UnionType):
        return [member for arg in get_args(tp) for member in _members(arg)]
    return [tp]


def _step(tp: Any, part: Any) -> list[Any]:
    """Where one location part leads from `tp`: a field's type, a list's item, a dict's value, a union's member."""
    out = []
    for member in _members(tp):
        if _is_model(member):
            if part in member.model_fields:
                out.append(member.model_fields[part].annotation)
            elif part in (_tag(member), member.__name__):  # pydantic names the union member it tried
                out.append(member)
        elif get_origin(member) in (list, tuple) and isinstance(part, int) and get_args(member):
            out.append(get_args(member)[0])
        elif get_origin(member) is dict and isinstance(part, str) and get_args(member):
            out.append(get_args(member)[1])
    return out


def _tag(model: type[BaseModel]) -> Any:
    field = model.model_fields.get("kind")
    return field.default if field is not None else None
