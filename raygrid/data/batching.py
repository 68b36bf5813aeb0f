"""Batches of unpadded token rows -> padded tensors (pad to the batch's longest row, not max_len)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def pad_batch(batch: dict[str, np.ndarray], pad_token_id: int, multiple: int = 8) -> dict[str, torch.Tensor]:
    """Collate rows of `input_ids` (ragged) + `label` (if present) into model inputs.

    Padding to the longest row in the batch (rounded up to `multiple`, which keeps tensor-core
    friendly shapes) instead of max_len is what makes short-document batches cheap.
    """
    rows = [np.asarray(r, dtype=np.int64) for r in batch["input_ids"]]
    longest = max(len(r) for r in rows)
    width = -(-longest // multiple) * multiple
    input_ids = np.full((len(rows), width), pad_token_id, dtype=np.int64)  # (B, L)
    attention_mask = np.zeros((len(rows), width), dtype=np.int64)  # (B, L)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = row
        attention_mask[i, : len(row)] = 1
    out = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention_mask)}
    if "label" in batch:  # MLM blocks carry no label: their targets are drawn when masking
        out["labels"] = torch.as_tensor(np.asarray(batch["label"], dtype=np.int64))
    return out


@dataclass(frozen=True)
class TokenRows:
    """A split's token rows as flat arrays owned by this process: row i is values[offsets[i]:offsets[i+1]].

    Copied out of the Arrow table once, so batches never keep the table's buffers alive (the
    in-memory path of the tests and `iterate_table`; trials batch streams with raygrid.data.stream_batches).
    """

    offsets: np.ndarray  # (rows + 1,)
    values: np.ndarray  # (total tokens,)
    labels: np.ndarray | None  # (rows,); None for MLM blocks

    @classmethod
    def from_table(cls, table) -> "TokenRows":
        ids = table["input_ids"].combine_chunks()
        offsets = ids.offsets.to_numpy()  # includes a sliced array's start; `values` does not slice
        values = np.array(ids.values.to_numpy()[offsets[0]:offsets[-1]], copy=True)
        labels = np.array(table["label"].to_numpy(), copy=True) if "label" in table.column_names else None
        return cls(np.array(offsets - offsets[0], dtype=np.int64), values, labels)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def plan_batches(rows: TokenRows, batches, pad_token_id: int, pin_memory: bool = False):
    """Padded batches, one per index array in `batches` (row numbers of a table).

    `pin_memory` (CUDA) lets the training loop copy each batch to the device without blocking.
    """
    for index in batches:
        batch = {"input_ids": [rows.values[rows.offsets[i]:rows.offsets[i + 1]] for i in index]}
        if rows.labels is not None:
            batch["label"] = rows.labels[index]
        padded = pad_batch(batch, pad_token_id)
        yield {k: v.pin_memory() for k, v in padded.items()} if pin_memory else padded


def iterate_table(table, batch_size: int, pad_token_id: int, shuffle_seed: int | None = None):
    """Batches from an in-memory pyarrow table: the Ray-free path used by tests and debugging."""
    order = np.arange(table.num_rows)
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(order)
    rows = TokenRows.from_table(table)
    yield from plan_batches(rows, [order[i:i + batch_size] for i in range(0, len(order), batch_size)], pad_token_id)
