"""A cell's batches from in-memory Arrow tables of tokenized rows (framework-free).

The Ray worker (raygrid.orchestration.trial) fills the tables from Ray Data; the bare loop of `raygrid bench
loop` and the tests read them from the cache. Both then batch identically: training batches
from raygrid.data.length_grouping (seeded by cell seed and epoch, this rank's share), evaluation
batches sorted by length, each padded to its longest row.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raygrid.spec.config import CellConfig
from raygrid.data.batching import TokenRows, plan_batches
from raygrid.data.length_grouping import batches_per_epoch, epoch_batches, eval_batches
from raygrid.training.train_loop import Loaders


def row_lengths(table: pa.Table) -> np.ndarray:
    """Token count of every row of a tokenized table."""
    return np.asarray(pc.list_value_length(table["input_ids"]).to_numpy(zero_copy_only=False), dtype=np.int64)


def table_loaders(cfg: CellConfig, tables: dict[str, pa.Table], pad_token_id: int, rank: int = 0,
                  world_size: int = 1, pin_memory: bool = False) -> Loaders:
    """Loaders for `fit` over `tables` ({split: table}; train, validation, optionally test)."""
    optim, grouped = cfg.optim, cfg.data.group_by_length
    eval_size = optim.eval_batch_size or 2 * optim.batch_size
    rows = {split: TokenRows.from_table(table) for split, table in tables.items()}
    train_lengths = rows["train"].lengths

    def train(epoch: int):
        plan = epoch_batches(train_lengths, optim.batch_size, cfg.seed, epoch, rank, world_size, grouped,
                             cfg.data.shuffle)
        return plan_batches(rows["train"], plan, pad_token_id, pin_memory)

    def split(name: str):
        plan = eval_batches(rows[name].lengths, eval_size, grouped)
        return lambda: plan_batches(rows[name], plan, pad_token_id, pin_memory)

    batches = batches_per_epoch(len(train_lengths), optim.batch_size, world_size)
    return Loaders(train=train, validation=split("validation"), test=split("test") if "test" in rows else None,
                   steps_per_epoch=-(-batches // optim.grad_accum))
