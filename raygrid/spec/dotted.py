"""Dotted paths ("model.pooling", "encoder.layer") into nested mappings and objects: the one walker.

Grid axes, overrides, stage links, selections and MLflow params all name a setting by its dotted path;
every module that follows one asks here, so "a.b.c" means the same thing everywhere:
a mapping is entered by key, anything else by attribute (a torch module's children, a model's fields).

    get_path({"model": {"pooling": "cls"}}, "model.pooling")   -> "cls"   (None where any step is missing)
    has_path(tree, "model.pooling")                            -> True    (the last key present, even if None)
    section(tree, "model.pooling", create=True)                -> (tree["model"], "pooling")
    flatten({"model": {"pooling": "cls"}})                     -> {"model.pooling": "cls"}   (leaves)
    all_paths({"model": {"pooling": "cls"}})                   -> {"model", "model.pooling"} (sections too)
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_MISSING = object()


def parts(dotted: str) -> list[str]:
    return dotted.split(".")


def _step(node: Any, part: str) -> Any:
    if isinstance(node, Mapping):
        return node.get(part, _MISSING)
    if node is None or isinstance(node, (str, int, float, bool, list, tuple)):
        return _MISSING
    return getattr(node, part, _MISSING)


def _walk(tree: Any, dotted: str) -> Any:
    node = tree
    for part in parts(dotted):
        node = _step(node, part)
        if node is _MISSING:
            return _MISSING
    return node


def get_path(tree: Any, dotted: str, default: Any = None) -> Any:
    """The value at `dotted` in `tree`, or `default` where a step is missing."""
    node = _walk(tree, dotted)
    return default if node is _MISSING else node


def has_path(tree: Any, dotted: str) -> bool:
    """Whether every step of `dotted` exists in `tree` (its value may be None)."""
    return _walk(tree, dotted) is not _MISSING


def section(tree: dict, dotted: str, create: bool = False) -> tuple[dict | None, str]:
    """(the mapping that holds `dotted`'s last key, that key); with `create`, missing sections are added.

    None for the mapping where a step is missing (without `create`); KeyError where a step is no mapping.
    """
    *parents, leaf = parts(dotted)
    node = tree
    for part in parents:
        child = node.setdefault(part, {}) if create else node.get(part)
        if child is None and not create:
            return None, leaf
        if not isinstance(child, dict):
            raise KeyError(f"'{part}' is not a section")
        node = child
    return node, leaf


def set_path(tree: dict, dotted: str, value: Any) -> None:
    """tree[a][b][c] = value for "a.b.c", adding missing sections."""
    node, leaf = section(tree, dotted, create=True)
    node[leaf] = value


def flatten(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    """{"model": {"pooling": "cls"}} -> {"model.pooling": "cls"}; an empty mapping leaves no key."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def all_paths(tree: Mapping, prefix: str = "") -> set[str]:
    """Every dotted path `tree` sets: its leaves and the sections above them."""
    paths = set()
    for key, value in tree.items():
        name = f"{prefix}{key}"
        paths.add(name)
        if isinstance(value, Mapping):
            paths |= all_paths(value, f"{name}.")
    return paths
