"""Batches of unpadded token rows -> padded tensors (pad to the batch's longest row, not max_len)."""
from __future__ import annotations

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


def plan_batches(table, batches, pad_token_id: int, pin_memory: bool = False):
    """Padded batches of `table`'s rows, one per index array in `batches` (raygrid.data.length_grouping).

    Rows are sliced from the Arrow buffers (no Python lists of ids). `pin_memory` (CUDA) lets the
    training loop copy each batch to the device without blocking.
    """
    ids = table["input_ids"].combine_chunks()
    offsets, values = ids.offsets.to_numpy(), ids.values.to_numpy()  # offsets already include a slice's start
    labels = table["label"].to_numpy() if "label" in table.column_names else None
    for rows in batches:
        batch = {"input_ids": [values[offsets[i]:offsets[i + 1]] for i in rows]}
        if labels is not None:
            batch["label"] = labels[rows]
        padded = pad_batch(batch, pad_token_id)
        yield {k: v.pin_memory() for k, v in padded.items()} if pin_memory else padded


def iterate_table(table, batch_size: int, pad_token_id: int, shuffle_seed: int | None = None):
    """Batches from an in-memory pyarrow table: the Ray-free path used by tests and debugging."""
    order = np.arange(table.num_rows)
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(order)
    yield from plan_batches(table, [order[i:i + batch_size] for i in range(0, len(order), batch_size)], pad_token_id)
