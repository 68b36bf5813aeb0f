"""Command-line overrides: `raygrid plan|run grid.yaml optim.lr=1e-4 axes.seed=[0,1] …`.

Each `key=value` edits the grid file's YAML tree *before* validation, so a bad override fails
exactly like a bad key in the file (`grid.yaml: base.optim.lr (override): Input should be …`),
before anything starts. The rules a torchtune or Hydra user expects:

- A key is dotted into `base` (`optim.lr=2e-5`, `model.pooling=mean`); in a staged grid that is
  the grid's base, under every stage's own base.
- Three top-level prefixes address the rest of the file: `base.` (explicit), `resources.`
  (`resources.max_concurrent_trials=1`) and `axes.` (`axes.seed=[0,1]`; the remainder is the axis
  key itself, so `axes.model.pooling=[mean]` replaces the `model.pooling` axis). `name=x` renames
  the grid (another MLflow experiment: the overridden cells then sit beside the originals). In a
  staged grid `stages.<name>.<key>=v` sets a key in one stage's base (`stages.<name>.axes.<axis>=`
  one of its axes).
- An override no cell would feel (every cell takes the key from an axis, or from each stage's
  own base) is refused, naming what sets it, rather than silently ignored.
- A value is one YAML scalar or flow collection, read as in the file: `1e-4` is a float,
  `[0,1]` a list, `{kind: favor}` a mapping (merged into the section as axis values are), `null`
  clears. Hydra's sweep `optim.lr=1e-4,3e-4` is refused with the axis that does it
  (`axes.optim.lr=[1e-4,3e-4]`); a string holding a comma is quoted (`key='a,b'`). Relative paths (`./x`, `../x`) are relative to the current folder, as on any command line.
"""
from __future__ import annotations

import copy
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from raygrid.spec.dotted import has_path
from raygrid.spec.grid import GridError, resolve_paths, set_dotted
from raygrid.spec.suggest import did_you_mean

# Top-level keys of a grid file an override may address directly; any other key goes into `base`.
PREFIXES = ("base", "axes", "resources", "stages")
TOP_LEVEL = ("name",)
_EXPONENT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")


@dataclass(frozen=True)
class Override:
    text: str  # as typed, for messages and the parent run's record
    key: str  # the dotted key in the grid file's tree: base.optim.lr, axes.model.pooling, resources.x, name
    value: Any


def parse_overrides(items: list[str] | tuple[str, ...], grid_path: Path | str = "") -> list[Override]:
    """`key=value` strings -> Overrides; a malformed one is a one-line GridError naming it."""
    where = f"{grid_path}: " if str(grid_path) else ""
    parsed = []
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not _KEY.match(key):
            raise GridError(f"{where}{item!r} (override): expected key=value with a dotted key, e.g. optim.lr=1e-4")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise GridError(f"{where}{_full_key(key)} (override): invalid YAML value {text!r} "
                            f"({getattr(err, 'problem', err)})") from None
        if _is_sweep(text, value):
            raise GridError(f"{where}{_full_key(key)} (override {item!r}): a comma list is Hydra's sweep, which "
                            f"raygrid writes as an axis: {_as_axis(_full_key(key), text)}")
        parsed.append(Override(item, _full_key(key), resolve_paths(_floats(value), Path.cwd())))
    return parsed


def _is_sweep(text: str, value: Any) -> bool:
    """`lr=1e-4,3e-4` (Hydra's multirun sweep): a plain, unquoted comma list that YAML reads as one string."""
    return isinstance(value, str) and "," in text and not text.strip().startswith(("'", '"'))


def _as_axis(key: str, text: str) -> str:
    """How to write a sweep of `key` over `text`'s values as an axis override."""
    values = "[" + ",".join(part.strip() for part in text.split(",")) + "]"
    head, _, rest = key.partition(".")
    if head == "axes" or ".axes." in key:  # already an axis: its values are a YAML list
        return f"{key}={values}"
    if head == "base":
        return f"axes.{rest}={values} (one cell per value)"
    if head == "stages" and rest.count(".") >= 1:
        name, _, inner = rest.partition(".")
        inner = inner.removeprefix("base.")
        return f"stages.{name}.axes.{inner}={values} (one cell per value)"
    return f"an axis in the grid file (e.g. axes: {{KEY: {values}}}); {key} itself takes one value"


def _floats(value: Any) -> Any:
    """`1e-4` as a float: PyYAML (YAML 1.1) reads exponents without a dot as strings, nobody types 1.0e-4."""
    if isinstance(value, str) and _EXPONENT.match(value):
        return float(value)
    if isinstance(value, list):
        return [_floats(v) for v in value]
    if isinstance(value, dict):
        return {k: _floats(v) for k, v in value.items()}
    return value


def _full_key(key: str) -> str:
    head = key.split(".", 1)[0]
    if key in TOP_LEVEL or (head in PREFIXES and "." in key):
        return key
    return f"base.{key}"


def apply_overrides(tree: dict, overrides: list[Override], grid_path: Path | str) -> dict:
    """A copy of the grid file's tree with the overrides set, in order (a later one wins)."""
    tree = copy.deepcopy(tree)
    for override in overrides:
        section, _, rest = override.key.partition(".")
        if not rest:  # a top-level scalar such as `name`
            tree[section] = override.value
            continue
        if section == "stages":
            _apply_to_stage(tree, override, rest, grid_path)
            continue
        target = tree.setdefault(section, {})
        if section == "axes":
            if not isinstance(target, dict):
                raise GridError(f"{grid_path}: {override.key} (override): this grid's axes are a list of blocks; "
                                f"edit the file to change one")
            target[rest] = override.value  # an axis key is itself dotted: one entry, never nested
            continue
        if not isinstance(target, dict):
            raise GridError(f"{grid_path}: {section} (override {override.text!r}): {section} is not a mapping")
        if section == "base" and (setter := _shadowed_by(tree, rest)):
            raise GridError(f"{grid_path}: {override.key} (override): every cell takes {rest} from {setter}")
        try:
            set_dotted(target, rest, override.value)
        except KeyError as err:
            raise GridError(f"{grid_path}: {override.key} (override): {err.args[0]}") from None
    return tree


def _apply_to_stage(tree: dict, override: Override, rest: str, grid_path) -> None:
    """`stages.<name>.<key>=v` into that stage's base; `stages.<name>.axes.<axis>=[...]` replaces one of its axes."""
    name, _, key = rest.partition(".")
    stages = [stage for stage in tree.get("stages") or [] if isinstance(stage, dict) and stage.get("name") == name]
    if not stages or not key:
        known = [str(stage.get("name")) for stage in tree.get("stages") or [] if isinstance(stage, dict)]
        hint = did_you_mean(name, known) if not stages else ""
        raise GridError(f"{grid_path}: {override.key} (override): no stage {name!r} with a key after it "
                        f"(stages: {', '.join(known) or 'none'}){hint}")
    stage = stages[0]
    if key.startswith("axes."):
        axes = stage.setdefault("axes", {})
        if not isinstance(axes, dict):
            raise GridError(f"{grid_path}: {override.key} (override): stage {name}'s axes are a list of blocks; "
                            f"edit the file to change one")
        axes[key[len("axes."):]] = override.value
        return
    key = key[len("base."):] if key.startswith("base.") else key
    if axis := _setting_axis(stage.get("axes"), key):
        raise GridError(f"{grid_path}: {override.key} (override): every cell of stage {name} takes {key} from "
                        f"its axis {axis}; override the axis instead (stages.{name}.axes.{axis}=[...])")
    try:
        set_dotted(stage.setdefault("base", {}), key, override.value)
    except KeyError as err:
        raise GridError(f"{grid_path}: {override.key} (override): {err.args[0]}") from None


def _shadowed_by(tree: dict, key: str) -> str | None:
    """What sets base `key` in every cell instead (an axis, or each stage's own base), or None.

    Axes apply over a stage's base, which applies over the grid's base: an override of `key` that
    every cell takes from one of those would change nothing, silently.
    """
    stages = [stage for stage in tree.get("stages") or [] if isinstance(stage, dict)]
    if not stages:
        axis = _setting_axis(tree.get("axes"), key)
        return f"its axis {axis}; override the axis instead (axes.{axis}=[...])" if axis else None
    for stage in stages:
        if not (has_path(stage.get("base") or {}, key) or _setting_axis(stage.get("axes"), key)):
            return None
    return (f"its stage's own base or axes (every stage sets it); override one stage with "
            f"stages.<name>.{key}=...")


def _setting_axis(axes: Any, key: str) -> str | None:
    """The axis that sets `key` in every block of `axes` (a mapping or a list of blocks), or None."""
    found = None
    for block in axes if isinstance(axes, list) else [axes]:
        setters = [axis for axis, values in (block or {}).items() if isinstance(values, list) and values
                   and all(key in _keys_set_by(axis, value) for value in values)]
        if not setters:
            return None
        found = setters[0]
    return found


def _keys_set_by(axis: str, value: Any) -> set[str]:
    """Dotted keys one axis value sets: a bundle's `set` keys, else the axis key itself."""
    if isinstance(value, dict) and isinstance(value.get("set"), dict) and set(value) <= {"label", "set"}:
        return set(value["set"])
    return {axis}


def mark_override(err: GridError, grid_path: Path | str, overrides: list[Override]) -> GridError:
    """The same error, with `(override)` after its key when the key came from the command line.

    Matching is on the key inside the cell (after `base.`), so `stages.ft.base.optim.lr` in a
    staged grid matches the override `optim.lr`; a key an axis sets names the axis, not the override.
    """
    message, prefix = str(err), f"{grid_path}: "
    if not overrides or not message.startswith(prefix) or "(override" in message:
        return err
    key, sep, rest = message[len(prefix):].partition(":")
    if not sep or " " in key:
        return err
    for override in overrides:
        if _same_key(key, override.key):
            return GridError(f"{prefix}{key} (override {override.text!r}):{rest}")
    return err


def _same_key(error_key: str, override_key: str) -> bool:
    parts = override_key.split(".")
    if parts[0] == "base":  # the key inside the cell: whichever (stage's) base the error names
        base = error_key.split(".")
        error_key = ".".join(base[len(base) - base[::-1].index("base"):]) if "base" in base else error_key
        override_key = ".".join(parts[1:])
    elif parts[0] == "stages" and len(parts) > 2 and parts[2] not in ("base", "axes"):
        override_key = ".".join([*parts[:2], "base", *parts[2:]])  # stages.S.k is stage S's base.k
    return any(a == b or a.startswith(b + ".") for a, b in ((error_key, override_key), (override_key, error_key)))


def describe_overrides(overrides: list[Override] | tuple[str, ...]) -> str:
    """The overrides as one shell line (what the parent run records)."""
    return shlex.join(o.text if isinstance(o, Override) else o for o in overrides)
