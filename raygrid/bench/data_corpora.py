"""Corpora of a chosen size for `raygrid bench data`, built from the shared samples and written as Parquet.

Wikipedia-like: the sample's articles in order, cycled; copy k of an article starts with a
"Copy k." line and has its paragraphs rotated by k, so no two documents are the same text but
every one reads like Wikipedia (keywords, lengths). Long documents: Hyperpartisan articles joined
ten at a time (~40k characters, ~9k tokens), labelled by the first. Both are written batch by
batch: the bench process never holds a corpus either.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raygrid.data.mlm_text import chain_batches

SHARD_ROWS = 5_000
JOINED = 10  # articles per long document


def wikipedia_like(sample: list[Path], articles: int, folder: Path) -> Path:
    """`articles` documents in Parquet shards of SHARD_ROWS under `folder`; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    texts = [t for f in sample for t in pq.read_table(f, columns=["text"])["text"].to_pylist() if t and t.strip()]
    rows = (_perturbed(texts[i % len(texts)], i // len(texts)) for i in range(articles))
    for shard, chunk in enumerate(chain_batches(rows, SHARD_ROWS)):
        pq.write_table(pa.table({"text": chunk}), folder / f"wiki_{shard:04d}.parquet", row_group_size=1024)
    return folder


def _perturbed(text: str, copy: int) -> str:
    if copy == 0:
        return text
    paragraphs = text.split("\n")
    k = copy % len(paragraphs)
    return f"Copy {copy}.\n" + "\n".join(paragraphs[k:] + paragraphs[:k])


def long_documents(articles_file: Path, documents: int, folder: Path, seed: int = 0) -> Path:
    """train/validation/test Parquet (80/10/10) of `documents` long labelled documents; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    table = pq.read_table(articles_file, columns=["text", "label"])
    texts, labels = table["text"].to_pylist(), table["label"].to_numpy()
    rng = np.random.default_rng(seed)
    cut = {"train": int(documents * 0.8), "validation": int(documents * 0.9), "test": documents}
    start = 0
    for split, stop in cut.items():
        with pq.ParquetWriter(folder / f"{split}.parquet", pa.schema([("text", pa.string()), ("label", pa.int64())])) \
                as writer:
            for chunk in chain_batches(range(start, stop), 500):
                picks = rng.integers(0, len(texts), (len(chunk), JOINED))
                writer.write_table(pa.table({"text": ["\n\n".join(texts[i] for i in row) for row in picks],
                                             "label": pa.array(labels[picks[:, 0]], pa.int64())}))
        start = stop
    return folder
