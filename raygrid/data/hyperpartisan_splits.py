"""Hyperpartisan by-article splits by article id: Longformer's published split, its overlaps, a leak-free one.

Longformer's `scripts/hp-splits.json` lists article ids per split; its test repeats 51 training
and 7 validation articles, and 58 articles are in no split (shared/data/README.md).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pyarrow as pa

from raygrid.data.raw import DataError
from raygrid.data.splits import SPLIT_IDS, SPLITS, resplit


def _int_id(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DataError(f"hyperpartisan: article id {value!r} is not a number") from None


def _ids_of(split) -> list[int]:
    if isinstance(split, (pa.Table, pa.RecordBatch)):
        if "id" not in split.column_names:
            raise DataError("hyperpartisan: table has no 'id' column")
        split = split["id"].to_pylist()
    return [_int_id(v) for v in split]


def longformer_split(table: pa.Table, split_json: str | Path | Mapping[str, Iterable]) -> dict[str, pa.Table]:
    """Longformer's train/dev/test (scripts/hp-splits.json: lists of integer ids) -> train/validation/test.

    Rows follow the order of the id lists. Reproduced verbatim, leaks included: see `split_overlaps`.
    `split_json` is the file's path or its parsed dict.
    """
    if not isinstance(split_json, Mapping):
        split_json = json.loads(Path(split_json).read_text())
    names = {"train": "train", "dev": "validation", "validation": "validation", "test": "test"}
    unknown = set(split_json) - set(names)
    if unknown:
        raise DataError(f"hyperpartisan split file: unknown keys {sorted(unknown)} (expected train/dev/test)")
    row_of = {article_id: row for row, article_id in enumerate(_ids_of(table))}
    splits = {}
    for key, ids in split_json.items():
        ids = [_int_id(i) for i in ids]
        missing = [i for i in ids if i not in row_of]
        if missing:
            raise DataError(f"hyperpartisan split {key!r}: {len(missing)} ids not in the table, e.g. {missing[:5]}")
        splits[names[key]] = table.take(pa.array([row_of[i] for i in ids], pa.int64()))
    return {name: splits[name] for name in ("train", "validation", "test") if name in splits}


def split_overlaps(splits: Mapping[str, object]) -> dict[str, list[int]]:
    """Ids shared by each pair of splits: {"a&b": sorted ids}, names in alphabetical order.

    Values are tables with an `id` column or lists of ids. On Longformer's split this gives
    51 ids in "test&train" and 7 in "test&validation" (named "dev&test" when the keys are train/dev/test).
    """
    ids = {name: set(_ids_of(value)) for name, value in splits.items()}
    names = sorted(ids)
    return {f"{a}&{b}": sorted(ids[a] & ids[b]) for i, a in enumerate(names) for b in names[i + 1:]}


def ids_in_no_split(table: pa.Table, splits: Mapping[str, object]) -> list[int]:
    """Ids of `table` that no split uses (58 for Longformer's split of the 645 articles)."""
    used = set().union(*(_ids_of(value) for value in splits.values()))
    return sorted(set(_ids_of(table)) - used)


def leak_free_split(table: pa.Table, seed: int = 0) -> dict[str, pa.Table]:
    """Stratified 80/10/10 train/validation/test over unique article ids, seeded.

    Duplicate ids (e.g. Longformer's splits concatenated) are kept once, first occurrence. Uses
    the same stratified splitter, in the same order, as the `resplit` split policy; on the 645
    articles it gives 516/65/64.
    """
    ids = _ids_of(table)
    first = sorted({article_id: row for row, article_id in reversed(list(enumerate(ids)))}.values())
    unique = table.take(pa.array(first, pa.int64())) if len(first) < len(ids) else table
    labels = {"all": unique["label"].to_numpy()}
    ids = resplit(labels, np.random.default_rng(seed))["all"]
    return {split: unique.filter(pa.array(ids == SPLIT_IDS[split])) for split in SPLITS}
