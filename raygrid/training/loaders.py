"""A cell's batches from streams of tokenized Arrow rows (framework-free).

The Ray worker (raygrid.orchestration.trial) and the bare loop of `raygrid bench loop` stream the
cache's Parquet files (a local folder or a storage URI); the tests stream in-memory tables. All
batch identically (raygrid.data.stream_batches): training batches length-grouped within bounded
windows, seeded by cell seed and epoch, each rank keeping its share of every window's batches;
evaluation batches sorted by length within windows; each padded to its longest row. No process
holds a whole split.
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raygrid.spec.config import CellConfig
from raygrid.data.batching import pad_batch
from raygrid.data.stream_batches import eval_batches, rank_batches, train_batches
from raygrid.training.train_loop import Loaders

Read = Callable[[str], Iterable]  # split -> all its rows, as Arrow record batches or tables, in order


def row_lengths(table: pa.Table) -> np.ndarray:
    """Token count of every row of a tokenized table."""
    return np.asarray(pc.list_value_length(table["input_ids"]).to_numpy(zero_copy_only=False), dtype=np.int64)


def stream_loaders(cfg: CellConfig, read: Read, split_rows: Mapping[str, int], pad_token_id: int,
                   rank: int = 0, world_size: int = 1, pin_memory: bool = False) -> Loaders:
    """Loaders for `fit`: each call of train(epoch) / validation() / test() reads its split anew.

    `split_rows`: the whole split's row counts (cache meta.json), for the windows and the LR
    schedule's length. Training: rank `rank` of `world_size` keeps its batches of the whole split's
    plan. Evaluation: every rank scores every row (each gets the same scores, no gathering).
    """
    optim, data = cfg.optim, cfg.data
    eval_size = optim.eval_batch_size or 2 * optim.batch_size
    rows = split_rows["train"]

    def pad(batches):
        for batch in batches:
            padded = pad_batch(batch, pad_token_id)
            yield {k: v.pin_memory() for k, v in padded.items()} if pin_memory else padded

    def train(epoch: int):
        return pad(train_batches(read("train"), optim.batch_size, cfg.seed, epoch, data.group_by_length,
                                 data.shuffle, total_rows=rows, rank=rank, world_size=world_size))

    def split(name: str):
        if not split_rows.get(name):
            return None
        return lambda: pad(eval_batches(read(name), eval_size, data.group_by_length))

    batches = rank_batches(rows, optim.batch_size, world_size, data.shuffle)
    return Loaders(train=train, validation=split("validation"), test=split("test"),
                   steps_per_epoch=-(-batches // optim.grad_accum))


def table_loaders(cfg: CellConfig, tables: dict[str, pa.Table], pad_token_id: int,
                  pin_memory: bool = False) -> Loaders:
    """`stream_loaders` over in-memory tables ({split: table}; train, validation, optionally test)."""
    return stream_loaders(cfg, lambda split: tables[split].to_batches(), {k: t.num_rows for k, t in tables.items()},
                          pad_token_id, pin_memory=pin_memory)
