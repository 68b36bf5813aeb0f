"""Training and evaluation batches from a stream of Arrow record batches, in bounded memory.

A trial's worker reads its shard of a split as a stream (Ray Data `iter_batches`, or the cache's
Parquet files in the bare loop and the tests) and never holds the whole split. Batching happens in
*windows* of `window_batches` batches (HF Trainer's megabatches): the rows of a window are permuted
by (seed, epoch, window index), sorted by length, cut into batches and the batches shuffled, so a
batch holds documents of similar length (padding ~1.05x instead of ~2x) while the batch order
stays random. Only one window of rows plus one incoming Arrow batch is held at a time.

Everything is a function of the shard's content and (seed, epoch): a cell resumed at an epoch
boundary replays the same batches. Rows never move between windows, which is why the cache stores
classification training rows in a seeded random order (raygrid.data.splits) rather than the
source's (often label-sorted) order.

Data parallelism: every rank streams the whole split and plans every window alike (windows of
`window_batches` rounds of `world_size` batches), then keeps every `world_size`-th batch of the
plan from its rank on. So the batches of all ranks together are exactly the one-worker plan at the
global batch size: padding does not grow with the worker count (a rank sorting only its own 1/N
of the rows pads more: Hyperpartisan 4096 / 8 on 4 workers 1.17x instead of 1.04x), the order is a
function of (seed, epoch) alone, and every rank runs the same number of steps. The price is that
every rank reads the whole split (bytes, never memory: one window at a time).
"""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Batches per window (HF Trainer's megabatch factor is 50): larger windows pad less but make
# neighbouring batches more alike in length; memory is window_batches x batch_size rows.
WINDOW_BATCHES = 50


def train_batches(stream: Iterable[pa.RecordBatch], batch_size: int, seed: int, epoch: int,
                  group_by_length: bool = True, shuffle: bool = True, window_batches: int = WINDOW_BATCHES,
                  total_rows: int | None = None, rank: int = 0, world_size: int = 1) -> Iterator[dict]:
    """One epoch of rank `rank`'s training batches ({"input_ids": [row arrays], "label"?: array}) over
    `stream`, the whole split (every rank reads all of it and keeps its batches).

    shuffle=False: consecutive rows in stream order (the study's unshuffled Wikipedia stage).
    group_by_length=False: plain batches in a seeded random order within each window.
    total_rows: the stream's row count when known (meta.json), to cut it into equal windows.
    """
    rows = _window_size(batch_size, window_batches, total_rows, shuffle, world_size)
    for index, window in enumerate(windows(stream, rows)):
        lengths = row_lengths(window) if group_by_length and shuffle else np.zeros(window.num_rows, np.int64)
        plan = window_plan(lengths, batch_size, seed, epoch, index, group_by_length, shuffle, world_size)
        for picked in plan[rank::world_size]:
            yield _batch(window, picked)


def _window_size(batch_size: int, window_batches: int, total_rows: int | None, shuffle: bool, world_size: int) -> int:
    """Rows per window: whole rounds of world_size batches (one round when unshuffled)."""
    if not shuffle:
        return batch_size * world_size
    return window_rows(batch_size * world_size, window_batches, total_rows)


def rank_batches(total_rows: int, batch_size: int, world_size: int = 1, shuffle: bool = True,
                 window_batches: int = WINDOW_BATCHES) -> int:
    """How many batches each rank gets in one epoch of `total_rows` rows (the same for every rank)."""
    rows = _window_size(batch_size, window_batches, total_rows, shuffle, world_size)
    count = 0
    for start in range(0, total_rows, rows):
        size = min(rows, total_rows - start)
        count += size // (batch_size * world_size) + (size % (batch_size * world_size) >= world_size)
    return count


def window_rows(batch_size: int, window_batches: int, total_rows: int | None = None) -> int:
    """Rows per window: window_batches batches, or, when the stream's length is known, that many
    rows spread evenly over round(total / window) windows (whole batches each). A short remainder
    window sorts poorly (516 Hyperpartisan articles as 400 + 116 rows pad 1.09x, as one window
    1.04x); the price is windows up to 1.5x the nominal size."""
    nominal = batch_size * window_batches
    if not total_rows:
        return nominal
    windows = max(1, round(total_rows / nominal))
    return -(-(-(-total_rows // windows)) // batch_size) * batch_size


def window_plan(lengths: np.ndarray, batch_size: int, seed: int, epoch: int, index: int,
                group_by_length: bool = True, shuffle: bool = True, world_size: int = 1) -> list[np.ndarray]:
    """Row positions of window `index`'s batches (rows 0..len(lengths)-1 of the window), in order,
    for all ranks: batch i goes to rank i % world_size, and the count is a multiple of world_size."""
    if not shuffle:
        return _cut(np.arange(len(lengths)), batch_size, world_size)
    rng = np.random.default_rng([seed, epoch, index])  # one stream per window: replayable alone
    order = rng.permutation(len(lengths))
    if group_by_length:
        order = order[np.argsort(-lengths[order], kind="stable")]
    batches = _cut(order, batch_size, world_size)
    if group_by_length:
        rng.shuffle(batches)
        if index == 0 and batches:  # the longest batches first, as HF Trainer: an out-of-memory shows at step 1
            first = sorted(range(len(batches)), key=lambda i: -int(lengths[batches[i]].max()))[:world_size]
            batches = [batches[i] for i in first] + [b for i, b in enumerate(batches) if i not in first]
    return batches


def _cut(order: np.ndarray, batch_size: int, world_size: int) -> list[np.ndarray]:
    """`order` in batches of batch_size, then the rows short of a whole round of world_size
    batches cut into world_size near-equal batches, so every rank gets as many. Fewer such rows
    than ranks (at most world_size - 1 per epoch, in the last window) are left out."""
    whole = len(order) // (batch_size * world_size) * batch_size * world_size
    batches = [order[i:i + batch_size] for i in range(0, whole, batch_size)]
    tail = order[whole:]
    if world_size == 1:
        return batches + ([tail] if len(tail) else [])
    return batches + (np.array_split(tail, world_size) if len(tail) >= world_size else [])


def epoch_plan(lengths: np.ndarray, batch_size: int, seed: int, epoch: int, group_by_length: bool = True,
               shuffle: bool = True, window_batches: int = WINDOW_BATCHES, rank: int | None = 0,
               world_size: int = 1) -> list[np.ndarray]:
    """The row numbers `train_batches` puts in each of rank `rank`'s batches of a stream with these
    row lengths (rank None: every rank's batches) (`raygrid bench padding` and the tests: the plan
    without the token ids)."""
    rows = _window_size(batch_size, window_batches, len(lengths), shuffle, world_size)
    plan = []
    for index, start in enumerate(range(0, len(lengths), rows)):
        window = np.asarray(lengths[start:start + rows])
        batches = window_plan(window, batch_size, seed, epoch, index, group_by_length, shuffle, world_size)
        plan += [start + b for b in (batches if rank is None else batches[rank::world_size])]
    return plan


def eval_batches(stream: Iterable[pa.RecordBatch], batch_size: int, group_by_length: bool = True,
                 window_batches: int = WINDOW_BATCHES) -> Iterator[dict]:
    """Evaluation batches over `stream`, every row once: sorted by length within each window (scores
    are sums over documents, so order does not matter), else in stream order."""
    for window in windows(stream, batch_size * window_batches):
        order = np.arange(window.num_rows)
        if group_by_length:
            order = np.argsort(-row_lengths(window), kind="stable")
        for i in range(0, len(order), batch_size):
            yield _batch(window, order[i:i + batch_size])


def padding_ratio(lengths: np.ndarray, batches: list[np.ndarray], multiple: int = 8) -> float:
    """Padded tokens / real tokens of `batches` (row numbers into `lengths`) when each is padded to
    its longest row, rounded up to `multiple` as raygrid.data.batching.pad_batch does."""
    lengths = np.asarray(lengths)
    real = sum(int(lengths[b].sum()) for b in batches)
    padded = sum(len(b) * (-(-int(lengths[b].max()) // multiple) * multiple) for b in batches if len(b))
    return padded / max(real, 1)


def windows(stream: Iterable[pa.RecordBatch | pa.Table], rows: int) -> Iterator[pa.Table]:
    """The stream (record batches or tables, as Ray's `iter_batches(batch_format="pyarrow")` gives)
    cut into tables of exactly `rows` rows (the last may be shorter), in order.

    Holds at most one window plus the Arrow batch that completes it.
    """
    pending: list[pa.Table] = []
    held = 0
    for batch in stream:
        if not batch.num_rows:
            continue
        pending.append(pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch)
        held += batch.num_rows
        while held >= rows:
            table = pa.concat_tables(pending)
            yield table.slice(0, rows)
            rest = table.slice(rows)
            pending, held = ([rest] if rest.num_rows else []), rest.num_rows
    if held:
        yield pa.concat_tables(pending)


def row_lengths(table: pa.Table) -> np.ndarray:
    """Token count of every row of a tokenized table."""
    return np.asarray(pc.list_value_length(table["input_ids"]).to_numpy(zero_copy_only=False), dtype=np.int64)


def _batch(window: pa.Table, rows: np.ndarray) -> dict:
    """The rows of `window` at `rows` as numpy arrays this process owns (views would keep the
    window's Arrow buffers alive; copies let the window go as soon as its batches are built)."""
    picked = window.take(pa.array(rows, type=pa.int64()))
    ids = picked["input_ids"].combine_chunks()
    offsets = ids.offsets.to_numpy()
    values = np.array(ids.values.to_numpy()[offsets[0]:offsets[-1]], dtype=np.int64)
    offsets = offsets - offsets[0]
    out = {"input_ids": [values[offsets[i]:offsets[i + 1]] for i in range(len(rows))]}
    if "label" in window.column_names:  # MLM rows carry no label
        out["label"] = np.array(picked["label"].to_numpy(zero_copy_only=False), dtype=np.int64)  # writable: torch
    return out
