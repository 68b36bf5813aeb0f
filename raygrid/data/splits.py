"""Split policies: the parts a dataset ships with -> train / validation / test, deterministically.

- `standard`: the published splits; a missing validation split is carved from train (stratified,
  `val_fraction`, seeded by `data.split_seed`).
- `study`: the study's exact rule per dataset (raygrid.data.study_splits: scikit-learn and pandas,
  seed 42): IMDB, ArXiv, Hyperpartisan by-publisher.
- `resplit`: every shipped part merged (in order) and re-split 80/10/10, stratified, seeded by
  `data.split_seed`.
Then `data.limit` takes a stratified, seeded subsample of each split.

A policy only looks at labels and row order, never at texts: `route` maps every row of every
shipped part to its split (or to none), so the texts can be streamed afterwards in bounded memory.
Rows keep their source order inside each split (parts in the order given, rows in file order);
which rows form a split is the rule's. The cache then stores the training split in a seeded random
order (raygrid.data.cache._write: trials shuffle only within bounded windows of their stream).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pyarrow as pa

from raygrid.data import study_splits
from raygrid.data.raw import DataError, RawSplits
from raygrid.spec.config import DataConfig

SPLITS = ("train", "validation", "test")
SPLIT_IDS = {name: i for i, name in enumerate(SPLITS)}
UNUSED = -1
# The concatenation order of the study's notebooks and which split the second split's first part is.
STUDY_ORDER = {"imdb": (("test", "train"), "test"), "arxiv": (("test", "train", "validation"), "validation")}

Routing = dict[str, np.ndarray]  # shipped part -> int8 split id of each of its rows (UNUSED = left out)


def route(labels: Mapping[str, np.ndarray], cfg: DataConfig) -> Routing:
    """Each row's split under `cfg.split`, then `cfg.limit`; `labels` maps shipped part -> labels in file order."""
    if cfg.split == "study":
        routing = _study(labels, cfg)
    elif cfg.split == "resplit":
        routing = resplit(labels, np.random.default_rng(cfg.split_seed))
    else:
        routing = _standard(labels, cfg)
    return _limit(routing, labels, cfg)


def _standard(labels: Mapping[str, np.ndarray], cfg: DataConfig) -> Routing:
    if "test" not in labels:
        raise DataError(f"data.split: {cfg.dataset} has no test split for the standard policy; "
                        f"use split: resplit (merged 80/10/10)")
    routing = {part: np.full(len(values), SPLIT_IDS[part], np.int8) for part, values in labels.items()}
    if "validation" not in labels:  # carve it from train, stratified, seeded
        rng = np.random.default_rng(cfg.split_seed)
        routing["train"][stratified_take(labels["train"], cfg.val_fraction, rng)] = SPLIT_IDS["validation"]
    return routing


def resplit(labels: Mapping[str, np.ndarray], rng: np.random.Generator) -> Routing:
    merged = np.concatenate(list(labels.values()))
    ids = np.zeros(len(merged), np.int8)
    rest = np.flatnonzero(stratified_take(merged, 0.2, rng))
    ids[rest] = SPLIT_IDS["validation"]
    ids[rest[stratified_take(merged[rest], 0.5, rng)]] = SPLIT_IDS["test"]
    return _unconcat(ids, labels)


def _study(labels: Mapping[str, np.ndarray], cfg: DataConfig) -> Routing:
    if cfg.dataset == "hyperpartisan" and (cfg.subset or "byarticle") == "bypublisher":
        _need(labels, ("train", "validation"), "hyperpartisan/bypublisher")
        sizes = cfg.study_sizes or _default_sizes()
        rows = study_splits.hyperpartisan_bypublisher(labels["train"], labels["validation"],
                                                     (sizes.train, sizes.heldout))
        routing = {part: np.full(len(values), UNUSED, np.int8) for part, values in labels.items()}
        routing["train"][rows["train"]] = SPLIT_IDS["train"]
        for split in ("validation", "test"):
            routing["validation"][rows[split]] = SPLIT_IDS[split]
        return routing
    if cfg.dataset not in STUDY_ORDER:
        raise DataError(f"data.split: study is the study's rule for imdb, arxiv and hyperpartisan (subset: "
                        f"bypublisher), not {cfg.dataset}{'/' + cfg.subset if cfg.subset else ''}; "
                        f"split: resplit merges and re-splits 80/10/10")
    order, rest_first = STUDY_ORDER[cfg.dataset]
    _need(labels, order, cfg.dataset)
    rows = study_splits.two_step(np.concatenate([labels[part] for part in order]), rest_first)
    ids = np.full(sum(len(labels[part]) for part in order), UNUSED, np.int8)
    for split, picked in rows.items():
        ids[picked] = SPLIT_IDS[split]
    by_part = _unconcat(ids, {part: labels[part] for part in order})
    return {part: by_part[part] for part in labels}  # the caller's part order


def _default_sizes():
    from raygrid.spec.config import StudySizes

    return StudySizes()


def _need(labels: Mapping[str, np.ndarray], parts, what: str) -> None:
    missing = [part for part in parts if part not in labels]
    if missing:
        raise DataError(f"data.split: study: {what} needs its shipped {', '.join(parts)} splits; "
                        f"{', '.join(missing)} not found")


def _unconcat(ids: np.ndarray, labels: Mapping[str, np.ndarray]) -> Routing:
    """Split an array over the concatenation of `labels`' parts back into one array per part."""
    bounds = np.cumsum([0] + [len(values) for values in labels.values()])
    return {part: ids[start:stop].copy() for part, start, stop in zip(labels, bounds[:-1], bounds[1:])}


def _limit(routing: Routing, labels: Mapping[str, np.ndarray], cfg: DataConfig) -> Routing:
    """data.limit: a stratified, seeded subsample of each split (over the parts in order)."""
    rng = np.random.default_rng(cfg.split_seed)
    ids = np.concatenate(list(routing.values())) if routing else np.zeros(0, np.int8)
    merged = np.concatenate(list(labels.values())) if labels else np.zeros(0, np.int64)
    for split in SPLITS:
        limit = getattr(cfg.limit, split)
        rows = np.flatnonzero(ids == SPLIT_IDS[split])
        if limit is not None and limit < len(rows):
            drop = ~stratified_take(merged[rows], limit / len(rows), rng)
            ids[rows[drop]] = UNUSED
    return _unconcat(ids, routing)


def stratified_take(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask taking round(fraction x count) rows of each label, drawn with `rng`."""
    take = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        take[rng.permutation(rows)[:int(round(fraction * len(rows)))]] = True
    return take


def split_rows(routing: Routing) -> dict[str, dict[str, np.ndarray]]:
    """{split: {part: row numbers in file order}}: which rows of which part each split takes."""
    return {split: {part: np.flatnonzero(ids == SPLIT_IDS[split]) for part, ids in routing.items()}
            for split in SPLITS}


def apply_split_policy(raw: RawSplits, cfg: DataConfig) -> dict[str, pa.Table]:
    """In memory (TF-IDF, `data stats`): {train, validation, test} tables of the raw splits under `cfg`."""
    routing = route({part: table["label"].to_numpy() for part, table in raw.tables.items()}, cfg)
    out = {}
    for split, rows in split_rows(routing).items():
        pieces = [raw.tables[part].take(pa.array(picked)) for part, picked in rows.items()]
        out[split] = pa.concat_tables(pieces) if pieces else pa.table({"text": pa.array([], pa.string()),
                                                                        "label": pa.array([], pa.int64())})
    return out


def cross_split_duplicates(splits: dict[str, pa.Table]) -> dict[str, int]:
    """Documents of validation/test whose exact text also appears in train (or test in validation).

    A non-zero count inflates scores: e.g. the Longformer Hyperpartisan split's test shares 51
    articles with train.
    """
    texts = {split: set(table["text"].to_pylist()) for split, table in splits.items()}
    return _pair_counts(lambda a, b: len(texts[a] & texts[b]), texts)


def duplicate_counts(hashes: Mapping[str, np.ndarray]) -> dict[str, int]:
    """`cross_split_duplicates` on 64-bit text hashes (the streaming writer keeps those, not the texts)."""
    unique = {split: np.unique(values) for split, values in hashes.items()}
    return _pair_counts(lambda a, b: int(np.isin(unique[a], unique[b], assume_unique=True).sum()), unique)


def _pair_counts(count, present) -> dict[str, int]:
    pairs = (("validation", "train"), ("test", "train"), ("test", "validation"))
    return {f"{a}&{b}": count(a, b) for a, b in pairs if a in present and b in present}
