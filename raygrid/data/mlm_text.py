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

from raygrid.spec.paths import resolve_location

# HF hub sources (the real default; CI and tests use local copies laid out the same way).
HUB_SOURCES = {
    "wikipedia": ("wikimedia/wikipedia", "20231101.en/*.parquet"),
    "wikitext": ("Salesforce/wikitext", "wikitext-103-raw-v1/train-*.parquet"),
}


def local_files(path: str, pattern: str = "*.parquet") -> list[Path]:
    """Parquet files of a folder (sorted: a stable document order), a glob like `dir/wiki_*.parquet`, or a file."""
    location = Path(resolve_location(path)).expanduser()
    if "*" in location.name:
        location, pattern = location.parent, location.name
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


def wikitext_articles(lines: Iterable[str]) -> Iterator[str]:
    """WikiText rows are lines; rejoin them into articles, which start at a ` = Title = ` line.

    Section headings (` = = Section = = `) stay inside their article, so a document boundary
    ([SEP] in the token stream) falls only between articles, as in the Wikipedia corpus.
    """
    article: list[str] = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("= ") and stripped.endswith(" =") and not stripped.startswith("= ="):
            if article:
                yield "".join(article)
            article = []
        article.append(line if line.endswith("\n") else line + "\n")
    if article:
        yield "".join(article)


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
