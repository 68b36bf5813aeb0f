"""MLM token blocks: documents concatenated (separated by [SEP]) and cut into fixed-length blocks.

`BlockPacker` frames each block as [CLS] ... [SEP], the usual BERT pretraining layout
(`data.mlm_layout: packed`); `mlm_blocks` applies it to a stream of texts. Reading corpora lives
in raygrid.data.corpus.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow.parquet as pq


def iter_texts(files: Iterable[Path], column: str = "text", limit: int | None = None,
               min_chars: int = 1) -> Iterator[str]:
    """Documents of local Parquet files one by one, skipping empty ones; stop after `limit`."""
    count = 0
    for file in files:
        for batch in pq.ParquetFile(file).iter_batches(columns=[column], batch_size=256):
            for text in batch.column(0).to_pylist():
                if text is None or len(text.strip()) < min_chars:
                    continue
                yield text
                count += 1
                if limit is not None and count >= limit:
                    return


class BlockPacker:
    """Token ids of consecutive documents -> full blocks of `block_len` ids framed as [CLS] body [SEP].

    Documents are separated by [SEP]; a block may span documents (BERT/RoBERTa "full sentences");
    the final partial block is dropped.
    """

    def __init__(self, block_len: int, cls_id: int, sep_id: int):
        if block_len < 3:
            raise ValueError(f"data.max_len: an MLM block needs at least 3 tokens, got {block_len}")
        self.body, self.cls, self.sep = block_len - 2, cls_id, sep_id
        self.buffer: list[int] = []

    def add(self, ids: list[int]) -> list[np.ndarray]:
        """Append one document; return the blocks it completed."""
        self.buffer.extend(ids)
        self.buffer.append(self.sep)  # document boundary
        blocks = []
        while len(self.buffer) >= self.body:
            blocks.append(np.asarray([self.cls, *self.buffer[:self.body], self.sep], dtype=np.int32))
            del self.buffer[:self.body]
        return blocks


def mlm_blocks(texts: Iterable[str], tokenizer, block_len: int, batch_docs: int = 64) -> Iterator[np.ndarray]:
    """Concatenate documents and yield int32 blocks of exactly `block_len` ids ([CLS] body [SEP])."""
    packer = BlockPacker(block_len, tokenizer.cls_token_id, tokenizer.sep_token_id)
    for batch in chain_batches(texts, batch_docs):
        for ids in tokenizer(batch, add_special_tokens=False)["input_ids"]:
            yield from packer.add(ids)


def chain_batches(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    """Group documents into lists of `size` so the fast tokenizer works on batches."""
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
