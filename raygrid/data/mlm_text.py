"""Unlabelled text for MLM: Wikipedia / WikiText streamed document by document, cut into token blocks.

Sources are read lazily (Parquet row groups one at a time, hub files one at a time), so the
600k-article Wikipedia dump never has to fit in memory. `mlm_blocks` concatenates documents
(separated by [SEP]) and cuts the token stream into fixed `block_len` blocks framed as
[CLS] ... [SEP], the usual BERT pretraining layout.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow.parquet as pq

from raygrid.paths import resolve_location

# HF hub sources (the real default; CI and tests use local copies laid out the same way).
HUB_SOURCES = {
    "wikipedia": ("wikimedia/wikipedia", "20231101.en/*.parquet"),
    "wikitext": ("Salesforce/wikitext", "wikitext-103-raw-v1/train-*.parquet"),
}


def local_files(path: str, pattern: str = "*.parquet") -> list[Path]:
    """Parquet files of a folder (sorted: a stable document order) or a single file."""
    location = Path(resolve_location(path)).expanduser()
    files = sorted(location.glob(pattern)) if location.is_dir() else [location]
    if not files or not all(f.is_file() for f in files):
        raise FileNotFoundError(f"data.path: no Parquet files matching {pattern} at {location}")
    return files


def hub_files(name: str) -> list[Path]:
    """Download (or find in the HF cache) the Parquet files of a hub text corpus."""
    from huggingface_hub import snapshot_download

    repo_id, pattern = HUB_SOURCES[name]
    root = Path(snapshot_download(repo_id, repo_type="dataset", allow_patterns=[pattern]))
    return sorted(root.glob(pattern))


def iter_texts(files: Iterable[Path], column: str = "text", limit: int | None = None,
               min_chars: int = 1) -> Iterator[str]:
    """Documents one by one, skipping empty ones (the enwiki sample has 4); stop after `limit`."""
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


def mlm_blocks(texts: Iterable[str], tokenizer, block_len: int, batch_docs: int = 64) -> Iterator[np.ndarray]:
    """Concatenate documents and yield int32 blocks of exactly `block_len` ids ([CLS] body [SEP]).

    The final partial block is dropped, as in BERT/RoBERTa pretraining data.
    """
    body = block_len - 2
    if body < 1:
        raise ValueError(f"data.max_len: an MLM block needs at least 3 tokens, got {block_len}")
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    buffer: list[int] = []
    for text in _chain_batches(texts, batch_docs):
        for ids in tokenizer(text, add_special_tokens=False)["input_ids"]:
            buffer.extend(ids)
            buffer.append(sep)  # document boundary
        while len(buffer) >= body:
            yield np.asarray([cls, *buffer[:body], sep], dtype=np.int32)
            del buffer[:body]


def _chain_batches(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    """Group documents into lists of `size` so the fast tokenizer works on batches."""
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
