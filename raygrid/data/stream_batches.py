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

Data parallelism: each rank streams its own shard and batches it alone with the per-rank batch
size; equal shards (Ray's `streaming_split(equal=True)`) give every rank the same batch count.
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
                  total_rows: int | None = None) -> Iterator[dict]:
    """One epoch of training batches ({"input_ids": [row arrays], "label"?: array}) over `stream`.

    shuffle=False: consecutive rows in stream order (the study's unshuffled Wikipedia stage).
    group_by_length=False: plain batches in a seeded random order within each window.
    total_rows: the stream's row count when known (meta.json), to cut it into equal windows.
    """
    rows = window_rows(batch_size, window_batches, total_rows) if shuffle else batch_size
    for index, window in enumerate(windows(stream, rows)):
        lengths = row_lengths(window) if group_by_length and shuffle else np.zeros(window.num_rows, np.int64)
        for picked in window_plan(lengths, batch_size, seed, epoch, index, group_by_length, shuffle):
            yield _batch(window, picked)


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
                group_by_length: bool = True, shuffle: bool = True) -> list[np.ndarray]:
    """Row positions of window `index`'s batches (rows 0..len(lengths)-1 of the window), in order."""
    if not shuffle:
        order = np.arange(len(lengths))
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng = np.random.default_rng([seed, epoch, index])  # one stream per window: replayable alone
    order = rng.permutation(len(lengths))
    if group_by_length:
        order = order[np.argsort(-lengths[order], kind="stable")]
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if group_by_length:
        rng.shuffle(batches)
        if index == 0:  # the longest batch first, as HF Trainer: an out-of-memory shows at step 1
            longest = max(range(len(batches)), key=lambda i: int(lengths[batches[i]].max()))
            batches.insert(0, batches.pop(longest))
    return batches


def epoch_plan(lengths: np.ndarray, batch_size: int, seed: int, epoch: int, group_by_length: bool = True,
               shuffle: bool = True, window_batches: int = WINDOW_BATCHES) -> list[np.ndarray]:
    """The row numbers `train_batches` puts in each batch of a stream with these row lengths
    (`raygrid bench padding` and the tests: the plan without the token ids)."""
    rows = window_rows(batch_size, window_batches, len(lengths)) if shuffle else batch_size
    plan = []
    for index, start in enumerate(range(0, len(lengths), rows)):
        window = np.asarray(lengths[start:start + rows])
        plan += [start + b for b in window_plan(window, batch_size, seed, epoch, index, group_by_length, shuffle)]
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
    """The rows of `window` at `rows` as numpy arrays this process owns (Ray's batches may be views
    into the shared object store; copies let the window go as soon as its batches are built)."""
    picked = window.take(pa.array(rows, type=pa.int64()))
    ids = picked["input_ids"].combine_chunks()
    offsets = ids.offsets.to_numpy()
    values = np.array(ids.values.to_numpy()[offsets[0]:offsets[-1]], dtype=np.int64)
    offsets = offsets - offsets[0]
    out = {"input_ids": [values[offsets[i]:offsets[i + 1]] for i in range(len(rows))]}
    if "label" in window.column_names:  # MLM rows carry no label
        out["label"] = np.array(picked["label"].to_numpy(zero_copy_only=False), dtype=np.int64)  # writable: torch
    return out
