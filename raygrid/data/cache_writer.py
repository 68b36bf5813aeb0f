"""Tokenized rows -> one Parquet file per split, written in row groups as they arrive.

Row groups hold a fixed number of rows that depends only on the entry's max_len (about 1 M token
ids each), never on how the rows arrived, so the in-process and the Ray Data tokenization write
the same bytes. Only each row's length, label and truncation flag are kept for the statistics in
meta.json (a few bytes per row); ids leave memory with their row group.

A split can be written in a seeded random row order (`permute`): trials stream a split and shuffle
only inside bounded windows (raygrid.data.stream_batches), so a label-sorted source (IMDB's train
file is all negatives, then all positives) would make every window one label. Rows go to bucket
files by their final position as they arrive; closing sorts one bucket at a time into the split
file, so memory stays at one bucket whatever the split's size.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raygrid.data.stats import length_summary

GROUP_TOKENS = 1 << 20  # token ids per row group (~4 MB of int32), whatever the documents' length
IDS = pa.list_(pa.int32())
DOCUMENT_SCHEMA = pa.schema([("input_ids", IDS), ("label", pa.int64()), ("n_tokens", pa.int32()),
                             ("truncated", pa.bool_())])
MLM_SCHEMA = pa.schema([("input_ids", IDS), ("n_tokens", pa.int32())])
KEPT = ("n_tokens", "label", "truncated")  # per-row columns kept for the statistics
BUCKET_GROUPS = 8  # row groups per bucket of a permuted split (~8 M token ids at full length)


def rows_per_group(max_len: int) -> int:
    """Rows per row group: ~GROUP_TOKENS ids at full length, between 64 and 4,096 rows."""
    return int(min(4096, max(64, GROUP_TOKENS // max_len)))


class SplitFiles:
    """`<folder>/<split>.parquet` for each split, fed table by table; `close()` returns per-split statistics."""

    def __init__(self, folder: Path, splits: Iterable[str], schema: pa.Schema, group_rows: int,
                 on_group: Callable[[], None] | None = None, permute: dict[str, np.ndarray] | None = None):
        """permute: {split: final position of each row in arrival order} (a permutation of its rows)."""
        self.schema, self.group_rows, self.on_group = schema, group_rows, on_group
        self.buckets = {split: _Buckets(folder / f"_{split}.buckets", schema, order, group_rows * BUCKET_GROUPS)
                        for split, order in (permute or {}).items()}
        self.writers = {split: pq.ParquetWriter(folder / f"{split}.parquet", schema) for split in splits}
        self.pending: dict[str, list[pa.Table]] = {split: [] for split in self.writers}
        self.counts = {split: 0 for split in self.writers}
        self.kept: dict[str, list[pa.Table]] = {split: [] for split in self.writers}

    def add(self, split: str, table: pa.Table) -> None:
        """Append rows (extra columns are dropped) and write every full row group."""
        table = table.select(self.schema.names).cast(self.schema)
        self.kept[split].append(table.select([c for c in KEPT if c in self.schema.names]))
        if split in self.buckets:  # held back until close(); the statistics do not depend on the order
            self.buckets[split].add(table)
        else:
            self._append(split, table)

    def _append(self, split: str, table: pa.Table) -> None:
        self.pending[split].append(table)
        self.counts[split] += table.num_rows
        while self.counts[split] >= self.group_rows:
            self._write(split, self.group_rows)

    def add_routed(self, table: pa.Table, names: tuple[str, ...]) -> None:
        """Rows of a table whose int8 `split` column indexes `names`, each to its split."""
        ids = table["split"].to_numpy()
        present = np.unique(ids)
        for index in present:
            self.add(names[int(index)], table if len(present) == 1 else table.filter(pa.array(ids == index)))

    def _write(self, split: str, rows: int) -> None:
        table = pa.concat_tables(self.pending[split])
        group = table.slice(0, rows).combine_chunks()  # one contiguous row group: the same bytes however rows came
        self.writers[split].write_table(group, row_group_size=rows)
        self.pending[split] = [table.slice(rows)]
        self.counts[split] -= rows
        if self.on_group is not None:
            self.on_group()

    def close(self) -> dict[str, dict]:
        """Write the last partial groups, close the files; {split: statistics}."""
        for split, buckets in self.buckets.items():
            for table in buckets.drain():
                self._append(split, table)
        for split, writer in self.writers.items():
            if self.counts[split]:
                self._write(split, self.counts[split])
            writer.close()
        return {split: length_stats(pa.concat_tables(kept) if kept else _empty(self.schema))
                for split, kept in self.kept.items()}

    def abort(self) -> None:
        for writer in self.writers.values():
            writer.close()
        for buckets in self.buckets.values():
            buckets.remove()


class _Buckets:
    """Rows of one split in bucket files by final position (`order[i]` for the i-th row to arrive)."""

    def __init__(self, folder: Path, schema: pa.Schema, order: np.ndarray, bucket_rows: int):
        self.folder, self.order, self.bucket_rows, self.arrived = folder, np.asarray(order), bucket_rows, 0
        self.schema = schema.append(pa.field("_position", pa.int64()))
        folder.mkdir()
        self.writers = [pa.ipc.new_stream(str(folder / f"{b}.arrow"), self.schema)
                        for b in range(-(-len(self.order) // bucket_rows))]

    def add(self, table: pa.Table) -> None:
        if self.arrived + table.num_rows > len(self.order):
            raise ValueError(f"permuted split: more rows than the {len(self.order)} announced")
        position = self.order[self.arrived:self.arrived + table.num_rows]
        self.arrived += table.num_rows
        table = table.append_column("_position", pa.array(position, pa.int64()))
        bucket = position // self.bucket_rows
        for b in np.unique(bucket):
            self.writers[int(b)].write_table(table.filter(pa.array(bucket == b)))

    def drain(self) -> Iterable[pa.Table]:
        """Each bucket's rows sorted by position, bucket by bucket: the split in its final order."""
        for writer in self.writers:
            writer.close()
        for b in range(len(self.writers)):
            with pa.memory_map(str(self.folder / f"{b}.arrow")) as source:
                table = pa.ipc.open_stream(source).read_all()
            yield table.sort_by("_position").drop_columns(["_position"]).combine_chunks()
        self.remove()

    def remove(self) -> None:
        for writer in self.writers:
            try:
                writer.close()
            except (OSError, pa.ArrowInvalid):
                pass
        shutil.rmtree(self.folder, ignore_errors=True)


def drain(tables: Iterable[pa.Table], files: SplitFiles, take: Callable[[pa.Table], None], bar) -> None:
    """Hand every tokenized table to `take`, ticking the progress `bar`; on any failure the files are closed."""
    try:
        for table in tables:
            take(table)
            bar.update(table.num_rows)
    except BaseException:
        files.abort()
        raise
    finally:
        bar.close()


def _empty(schema: pa.Schema) -> pa.Table:
    return schema.empty_table().select([c for c in KEPT if c in schema.names])


def length_stats(table: pa.Table, max_len: int | None = None) -> dict:
    """rows, tokens, {mean,median,p95,max}_len of `n_tokens`; share_truncated and label_counts when present."""
    lengths = table["n_tokens"].to_numpy()
    if len(lengths) == 0:
        return {"rows": 0}
    summary = length_summary(lengths)
    stats = {"rows": int(len(lengths)), "tokens": int(lengths.sum()),
             **{f"{name}_len": value for name, value in summary.items()}}  # mean_len, median_len, p95_len, max_len
    if "truncated" in table.column_names:
        stats["share_truncated"] = float(table["truncated"].to_numpy(zero_copy_only=False).mean())
    if "label" in table.column_names:
        labels = table["label"].to_numpy()
        stats["label_counts"] = {int(k): int(v) for k, v in zip(*np.unique(labels, return_counts=True))}
    return stats
