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


def iterate_table(table, batch_size: int, pad_token_id: int, shuffle_seed: int | None = None):
    """Batches from an in-memory pyarrow table: the Ray-free path used by tests and debugging."""
    order = np.arange(table.num_rows)
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(order)
    ids = table["input_ids"].to_pylist()
    labels = table["label"].to_numpy() if "label" in table.column_names else None
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        batch = {"input_ids": [ids[i] for i in rows]}
        if labels is not None:
            batch["label"] = labels[rows]
        yield pad_batch(batch, pad_token_id)
