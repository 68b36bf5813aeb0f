"""Texts -> token ids, batch by batch, straight into Arrow: the one tokenization both cache builders use.

A builder hands over a `batches` callable (picklable, no arguments) that yields pyarrow tables with
a `text` column and any columns to carry along (label, split, ...), and gets back an iterator of
tables where `text` is replaced by `input_ids: list<int32>` and `n_tokens: int32` (plus
`truncated: bool` when documents are cut at max_len). `in_process` does it here;
raygrid.orchestration.tokenize_pool.ray_tokenize does the same on a Ray Data actor pool across
nodes (same signature, same rows, same order), so the cache files are byte for byte the same.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa

Batches = Callable[[], Iterable[pa.Table]]
# (batches, spec) -> tokenized tables in the same order: in_process, or a Ray Data actor pool.
Tokenize = Callable[[Batches, "TokenizeSpec"], Iterator[pa.Table]]
IDS = pa.list_(pa.int32())


@dataclass(frozen=True)
class TokenizeSpec:
    """How to tokenize: which tokenizer, and whether and where documents are cut."""

    tokenizer: str  # location (folder, pkg://, hub id)
    # Documents framed [CLS] ... [SEP] and cut at max_len (the first max_len ids, the last one [SEP]);
    # None = whole documents without special tokens (packed MLM blocks are framed later).
    max_len: int | None


def load_tokenizer(location: str):
    """A fast HF tokenizer from a local folder, pkg:// folder, or hub id."""
    from transformers import AutoTokenizer  # late import: keeps `raygrid plan` light

    from raygrid.spec.paths import resolve_location

    return AutoTokenizer.from_pretrained(resolve_location(location), use_fast=True)


def cutting_tokenizer(location: str):
    """`load_tokenizer` for the cache builders, which cut lengths themselves: no "longer than" warnings."""
    tokenizer = load_tokenizer(location)
    tokenizer.model_max_length = 1 << 40
    return tokenizer


def in_process(batches: Batches, spec: TokenizeSpec) -> Iterator[pa.Table]:
    """Tokenize every batch here, in order (the tokenizer's own Rust threads use the cores)."""
    tokenizer = cutting_tokenizer(spec.tokenizer)
    for table in batches():
        yield tokenize_table(table, tokenizer, spec.max_len)


def tokenize_table(table: pa.Table, tokenizer, max_len: int | None) -> pa.Table:
    """table(text, ...) -> table(input_ids, n_tokens[, truncated], ...): the other columns carried along.

    The tokenizer is called on runs of documents of at most CALL_CHARS characters: its encodings
    (ids, offsets, overflow windows) are large, and a batch of 256 long documents would hold them all.
    """
    texts = table["text"].to_pylist()
    pieces = []
    for start, stop in _runs(texts):
        ids, truncated = _encode(texts[start:stop], tokenizer, max_len)
        columns = {"input_ids": list_array(ids), "n_tokens": pa.array([len(x) for x in ids], pa.int32())}
        if max_len is not None:
            columns["truncated"] = pa.array(truncated, pa.bool_())
        pieces.append(pa.table(columns))
    tokens = pa.concat_tables(pieces) if pieces else _empty(max_len)
    carried = {name: table[name] for name in table.column_names if name != "text"}
    return pa.table({**{name: tokens[name] for name in tokens.column_names}, **carried})


CALL_CHARS = 1 << 18  # characters per tokenizer call (~60k tokens): bounds its encodings' memory


def _runs(texts: list[str]) -> Iterator[tuple[int, int]]:
    """(start, stop) of consecutive texts holding at most CALL_CHARS characters (at least one text each)."""
    start, size = 0, 0
    for index, text in enumerate(texts):
        if index > start and size + len(text) > CALL_CHARS:
            yield start, index
            start, size = index, 0
        size += len(text)
    if start < len(texts):
        yield start, len(texts)


def _encode(texts: list[str], tokenizer, max_len: int | None):
    if max_len is None:
        return tokenizer(texts, add_special_tokens=False, return_attention_mask=False,
                         return_token_type_ids=False)["input_ids"], None
    return _truncated_ids(texts, tokenizer, max_len)


def _empty(max_len: int | None) -> pa.Table:
    columns = {"input_ids": pa.array([], IDS), "n_tokens": pa.array([], pa.int32())}
    if max_len is not None:
        columns["truncated"] = pa.array([], pa.bool_())
    return pa.table(columns)


def _truncated_ids(texts: list[str], tokenizer, max_len: int) -> tuple[list[list[int]], list[bool]]:
    """[CLS] ... [SEP] ids cut at max_len, and whether each document lost tokens to the cut.

    The tokenizer's overflow windows tell exactly which documents were cut (the first window is
    the kept one), whatever the tokenizer's special-token template.
    """
    enc = tokenizer(texts, truncation=True, max_length=max_len, return_overflowing_tokens=True,
                    return_attention_mask=False, return_token_type_ids=False)
    owner = np.asarray(enc["overflow_to_sample_mapping"])
    first = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]]) if len(owner) else np.zeros(0, int)
    counts = np.diff(np.r_[first, len(owner)])
    return [enc["input_ids"][i] for i in first], (counts > 1).tolist()


def list_array(ids: list[list[int]] | list[np.ndarray]) -> pa.Array:
    """list<int32> from per-row id sequences without building an Arrow list of Python ints row by row."""
    lengths = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
    offsets = np.zeros(len(ids) + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=int(lengths.sum()))
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))
