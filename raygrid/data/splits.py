"""Split policies: the raw splits a dataset ships with -> train / validation / test, deterministically.

- `standard`: the published splits; a missing validation split is carved from train.
- `study`: all splits merged and re-split 80/10/10 (as the study did).
Both are stratified by label and seeded by `data.split_seed` (never by the cell's training seed, so
every cell of a grid sees the same documents).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from raygrid.spec.config import DataConfig
from raygrid.data.raw import RawSplits

SPLITS = ("train", "validation", "test")


def apply_split_policy(raw: RawSplits, cfg: DataConfig) -> dict[str, pa.Table]:
    """Return {train, validation, test} tables, subsampled to `cfg.limit` when set."""
    rng = np.random.default_rng(cfg.split_seed)
    if cfg.split == "study":
        merged = pa.concat_tables([raw.tables[s] for s in raw.tables])
        train, rest = stratified_split(merged, 0.2, rng)
        validation, test = stratified_split(rest, 0.5, rng)
        splits = {"train": train, "validation": validation, "test": test}
    else:
        splits = dict(raw.tables)
        if "test" not in splits:
            raise ValueError(f"data.split: {cfg.dataset} has no test split for the standard policy; use split: study")
        if "validation" not in splits:
            splits["train"], splits["validation"] = stratified_split(splits["train"], cfg.val_fraction, rng)
    for split in SPLITS:
        limit = getattr(cfg.limit, split)
        if limit is not None and limit < splits[split].num_rows:
            splits[split] = stratified_split(splits[split], limit / splits[split].num_rows, rng)[1]
    return {split: splits[split] for split in SPLITS}


def cross_split_duplicates(splits: dict[str, pa.Table]) -> dict[str, int]:
    """Documents of validation/test whose exact text also appears in train (or test in validation).

    A non-zero count inflates scores: e.g. the Longformer Hyperpartisan split's test shares 51
    articles with train.
    """
    texts = {split: set(table["text"].to_pylist()) for split, table in splits.items()}
    pairs = (("validation", "train"), ("test", "train"), ("test", "validation"))
    return {f"{a}&{b}": len(texts[a] & texts[b]) for a, b in pairs if a in texts and b in texts}


def stratified_split(table: pa.Table, fraction: float, rng: np.random.Generator) -> tuple[pa.Table, pa.Table]:
    """Split rows into (rest, part) where `part` holds ~fraction of each label, order preserved."""
    labels = table["label"].to_numpy()
    take = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        count = int(round(fraction * len(rows)))
        take[rng.permutation(rows)[:count]] = True
    return table.filter(pa.array(~take)), table.filter(pa.array(take))
