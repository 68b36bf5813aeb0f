"""Tokenized rows -> one Parquet file per split, written in row groups as they arrive.

Row groups hold a fixed number of rows that depends only on the entry's max_len (about 1 M token
ids each), never on how the rows arrived, so the in-process and the Ray Data tokenization write
the same bytes. Only each row's length, label and truncation flag are kept for the statistics in
meta.json (a few bytes per row); ids leave memory with their row group.
"""
from __future__ import annotations

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


def rows_per_group(max_len: int) -> int:
    """Rows per row group: ~GROUP_TOKENS ids at full length, between 64 and 4,096 rows."""
    return int(min(4096, max(64, GROUP_TOKENS // max_len)))


class SplitFiles:
    """`<folder>/<split>.parquet` for each split, fed table by table; `close()` returns per-split statistics."""

    def __init__(self, folder: Path, splits: Iterable[str], schema: pa.Schema, group_rows: int,
                 on_group: Callable[[], None] | None = None):
        self.schema, self.group_rows, self.on_group = schema, group_rows, on_group
        self.writers = {split: pq.ParquetWriter(folder / f"{split}.parquet", schema) for split in splits}
        self.pending: dict[str, list[pa.Table]] = {split: [] for split in self.writers}
        self.counts = {split: 0 for split in self.writers}
        self.kept: dict[str, list[pa.Table]] = {split: [] for split in self.writers}

    def add(self, split: str, table: pa.Table) -> None:
        """Append rows (extra columns are dropped) and write every full row group."""
        table = table.select(self.schema.names).cast(self.schema)
        self.kept[split].append(table.select([c for c in KEPT if c in self.schema.names]))
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
        for split, writer in self.writers.items():
            if self.counts[split]:
                self._write(split, self.counts[split])
            writer.close()
        return {split: length_stats(pa.concat_tables(kept) if kept else _empty(self.schema))
                for split, kept in self.kept.items()}

    def abort(self) -> None:
        for writer in self.writers.values():
            writer.close()


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
