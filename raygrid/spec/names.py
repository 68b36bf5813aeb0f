"""Cell names: readable, deterministic labels made from a cell's axis values only.

A cell name joins `key=value` per axis (the last part of the dotted key), e.g.
`pooling=cls,n_freeze=0,p_drop=0.1`; a dict value reads like a call,
`attention=favor(feature_map=hyperbolic,nb_features=64)`, a bundle value by its label
(`task=imdb`), a path by its last part. Cells of a staged grid are `<stage>/<name>`.

Names identify cells in MLflow (skip-finished, `select:`, a stage's parent cell) and name Tune
trials, so a change of format must not orphan what a store recorded. raygrid before 0.2 wrote
dict values as `favor-feature_map=hyperbolic-nb_features=64` (the `-` read as a minus):
  legacy_cell_name  the name that format gave a combination (exact: the old rule, kept), which
                    the skip/select/parent look-ups try after the current name (Cell.former_names)
  modern_name       an old-format recorded name rewritten in today's format, for reports over a
                    store that holds both (display and grouping only; exact for every name but
                    those cut short with a `~digest`, which stay as recorded)
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

# Axis values that are file paths: names show only their last part.
_PATH_PREFIXES = ("./", "../", "/", "~")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.=+-]")  # in a leaf value; ( ) , are the structure of a dict value
MAX_LEN, KEPT = 64, 55  # a longer label is cut to KEPT characters plus `~` and 8 hex digits of its value


def is_bundle(value: Any) -> bool:
    """An axis value that sets several keys: {label: name, set: {dotted.key: value, ...}}."""
    return isinstance(value, dict) and "set" in value and set(value) <= {"label", "set"} and isinstance(value["set"], dict)


def cell_name(combo: dict[str, Any]) -> str:
    """Deterministic name from axis values only, e.g. `pooling=cls,n_freeze=1,seed=0`."""
    if not combo:
        return "base"
    return ",".join(f"{key.split('.')[-1]}={short_value(value)}" for key, value in combo.items())


def short_value(value: Any) -> str:
    """Readable, filesystem-safe label of an axis value: `cls`, `0.1`, `imdb`, `favor(nb_features=64)`."""
    return _bounded(_label(value), value)


def _label(value: Any) -> str:
    if is_bundle(value) and "label" in value:
        return _leaf(value["label"])
    if isinstance(value, dict):
        inner = ",".join(f"{_leaf(k)}={_label(v)}" for k, v in value.items() if k != "kind")
        kind = _leaf(value["kind"]) if "kind" in value else ""
        return f"{kind}({inner})" if inner or not kind else kind  # {kind: softmax} is just `softmax`
    return _leaf(value)


def _leaf(value: Any) -> str:
    if isinstance(value, str) and value.startswith(_PATH_PREFIXES):
        value = Path(value).name
    return _UNSAFE.sub("_", str(value))


def _bounded(text: str, value: Any) -> str:
    """Long labels (paths, big dicts) stay unique through a hash of the value."""
    if len(text) <= MAX_LEN:
        return text
    digest = hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{text[:KEPT]}~{digest}"


# --- names recorded by raygrid before 0.2 -----------------------------------------------------------

def legacy_cell_name(combo: dict[str, Any]) -> str:
    """The name raygrid < 0.2 gave this combination (dict values joined by `-`)."""
    if not combo:
        return "base"
    return ",".join(f"{key.split('.')[-1]}={_legacy_value(value)}" for key, value in combo.items())


def _legacy_value(value: Any) -> str:
    if is_bundle(value) and "label" in value:
        text = str(value["label"])
    elif isinstance(value, dict):
        parts = [str(value.get("kind", ""))] if "kind" in value else []
        parts += [f"{k}={_legacy_value(v)}" for k, v in value.items() if k != "kind"]
        text = "-".join(p for p in parts if p)
    elif isinstance(value, str) and value.startswith(_PATH_PREFIXES):
        text = Path(value).name
    else:
        text = str(value)
    return _bounded(_UNSAFE.sub("_", text), value)


# `-` followed by `key=`: where the old format joined a dict's entries
_LEGACY_JOIN = re.compile(r"-(?=[A-Za-z_][A-Za-z0-9_]*=)")


def modern_label(label: str) -> str:
    """An axis label as recorded (old or new format) in today's format: `favor-nb_features=64` -> `favor(nb_features=64)`.

    Old labels never hold `(`; a label cut short (`~digest`) or without `=` reads the same in
    both formats. A lone `key=value` without a kind is left alone: it may be a plain value.
    """
    if "(" in label or "=" not in label or "~" in label:
        return label
    parts = _LEGACY_JOIN.split(label)
    kind = parts.pop(0) if "=" not in parts[0] else ""
    if not kind and len(parts) < 2:
        return label
    return f"{kind}({','.join(parts)})"


def modern_name(name: str) -> str:
    """A recorded cell name in today's format (names written before 0.2 are rewritten, others kept)."""
    if "(" in name or "=" not in name:
        return name
    stage, slash, rest = name.rpartition("/")  # old names hold no `/` but the stage's
    parts = []
    for part in rest.split(","):  # old values never hold `,`
        key, sep, label = part.partition("=")
        parts.append(f"{key}={modern_label(label)}" if sep else part)
    return f"{stage}{slash}{','.join(parts)}"


def top_level_parts(name: str) -> list[str]:
    """A name's `key=value` parts: its commas outside parentheses (`a=f(x=1,y=2),seed=0` -> 2 parts)."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(name):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(name[start:i])
            start = i + 1
    return parts + [name[start:]]
