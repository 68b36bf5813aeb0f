"""Token sequences for masked-language-model cells, cached like the classification data.

Two kinds of text feed an `mlm` cell:
- a corpus (`wikipedia`, `wikitext`; raygrid.data.corpus): documents in shard order, optionally
  selected by the study's rule (`data.corpus_rule: study`), each sent to train or validation
  (share `val_fraction`, drawn with `split_seed`; 0 = train only), up to `limit.train` documents;
  reading stops there, so later shards are never opened (nor downloaded);
- a task dataset (imdb, hyperpartisan, arxiv, local): the train and validation documents of its
  split policy; task-adaptive pretraining never sees the task's test documents.
Layouts (`data.mlm_layout`): `packed` concatenates a split's documents and cuts `max_len` blocks
(raygrid.data.mlm_text.BlockPacker, each row group of blocks shuffled, seeded); `document` keeps
one sequence per document, [CLS] ... [SEP] truncated at max_len, in source order, the first
`short_rows` training sequences cut to `short_len` (the study's Wikipedia corpus: 450,000 x 128
then 150,000 x 512). Layout: `<root>/tokenized/mlm-<dataset>-<key>/{train[,validation]}.parquet`
+ `meta.json`; rows hold `input_ids` and `n_tokens`. Masking happens per batch in training.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa

from raygrid.data import builds, storage
from raygrid.data.cache import CACHE_VERSION, PreparedData, cache_key, find_entry, publish_entry
from raygrid.data.cache_writer import MLM_SCHEMA, SplitFiles, drain, rows_per_group
from raygrid.data.corpus import (CorpusSource, first_words, hub_corpus, local_corpus, rows, study_selects,
                                 wikitext_articles)
from raygrid.data.mlm_sinks import DocumentSink, PackedSink
from raygrid.data.tokenize import Tokenize, TokenizeSpec, in_process, load_tokenizer
from raygrid.spec.config import CORPORA, DataConfig

MLM_SPLITS = ("train", "validation")
BATCH_DOCS = 256  # documents per batch handed to the tokenizer


def prepare_mlm(cfg: DataConfig, tokenizer_location: str, root: str | Path, progress: bool = True,
                tokenize: Tokenize | None = None) -> PreparedData:
    """Return the cache entry of MLM sequences for `cfg`, building it (once) if needed."""
    with contextlib.ExitStack() as stack:
        if cfg.dataset in CORPORA:
            corpus = local_corpus(cfg.dataset, cfg.path, cfg.text_column) if cfg.path else \
                hub_corpus(cfg.dataset, cfg.text_column)
            fingerprint, origin = corpus.fingerprint, {"files": corpus.origin}

            def make_batches():
                return CorpusBatches(corpus, cfg)
        else:
            from raygrid.data.sources import opened, resolve

            resolved = resolve(cfg)  # files and fingerprint; XML archives are converted only on a cache miss
            fingerprint, origin = resolved.source.fingerprint, {p.name: p.origin for p in resolved.source.parts}

            def make_batches():
                return _task_batches(stack.enter_context(opened(resolved)), cfg)
        key = cache_key(cfg, fingerprint, tokenizer_location, kind="mlm")
        folder, entry = find_entry(root, f"mlm-{cfg.dataset}-{key}")
        if entry is not None:
            return entry
        tokenizer = load_tokenizer(tokenizer_location)
        if tokenizer.mask_token_id is None:
            raise ValueError(f"model.tokenizer: {tokenizer_location} has no [MASK] token; it cannot train an MLM")
        batches = make_batches()
        with builds.build_dir(folder, storage.is_uri(folder)) as tmp:
            stats, read = _write(batches, cfg, tokenizer_location, tokenizer, tmp, tokenize or in_process, progress)
            meta = {"version": CACHE_VERSION, "kind": "mlm", "layout": cfg.mlm_layout, "dataset": cfg.dataset,
                    "key": key, "label_names": [], "pad_token_id": tokenizer.pad_token_id,
                    "mask_token_id": tokenizer.mask_token_id, "vocab_size": len(tokenizer),
                    "special_ids": sorted(set(tokenizer.all_special_ids)), "max_len": cfg.max_len, "splits": stats,
                    "data": cfg.rows_fields(), "tokenizer": tokenizer_location, "source": origin, **read}
            return publish_entry(tmp, folder, meta)


def _write(batches, cfg: DataConfig, location: str, tokenizer, folder: Path, tokenize: Tokenize,
           progress: bool) -> tuple[dict, dict]:
    """Tokenize the documents into the split files; (per-split statistics, what was read of the source)."""
    from tqdm.auto import tqdm

    splits = MLM_SPLITS if cfg.val_fraction > 0 or cfg.dataset not in CORPORA else ("train",)
    document = cfg.mlm_layout == "document"
    group = rows_per_group(cfg.max_len) if document else PackedSink.GROUP_ROWS
    files = SplitFiles(folder, splits, MLM_SCHEMA, group, on_group=lambda: builds.touch(folder))
    sink = (DocumentSink(files, MLM_SPLITS, cfg.short_rows or 0, cfg.short_len, tokenizer.sep_token_id) if document
            else PackedSink(files, MLM_SPLITS, cfg.max_len, tokenizer, np.random.default_rng(cfg.split_seed)))
    spec = TokenizeSpec(location, cfg.max_len if document else None)
    bar = tqdm(total=cfg.limit.train if cfg.dataset in CORPORA else None, desc=f"mlm {cfg.dataset}", unit="doc",
               disable=not progress)
    last = {}

    def take(table: pa.Table) -> None:
        sink.add(table)
        if "source_row" in table.column_names and table.num_rows:  # how far into the source reading went
            last.update(source_rows_read=int(table["source_row"][-1].as_py()) + 1,
                        source_shards_read=int(table["shard"][-1].as_py()) + 1)

    drain(tokenize(batches, spec), files, take, bar)
    stats = sink.close()
    if cfg.dataset not in CORPORA and stats["validation"]["rows"] == 0:  # a task without validation documents
        (folder / "validation.parquet").unlink()
        del stats["validation"]
    for split in stats:
        if stats[split]["rows"] == 0:
            raise ValueError(f"data: {cfg.dataset} yields no {split} sequence of {cfg.max_len} tokens "
                             f"(too little text: raise limit.train or val_fraction, or lower data.max_len)")
    return stats, last


class CorpusBatches:
    """A corpus' kept documents as batches(text, split, source_row, shard): picklable for a Ray read task."""

    def __init__(self, corpus: CorpusSource, cfg: DataConfig):
        self.corpus, self.cfg = corpus, cfg

    def __call__(self) -> Iterator[pa.Table]:
        rng, limit = np.random.default_rng(self.cfg.split_seed), self.cfg.limit.train
        kept: list[tuple[str, int, int, int]] = []
        count = 0
        for (shard, row), text in self._documents():
            if limit is not None and count >= limit:
                break
            kept.append((text, int(rng.random() < self.cfg.val_fraction), row, shard))
            count += 1
            if len(kept) == BATCH_DOCS:
                yield _corpus_table(kept)
                kept = []
        if kept:
            yield _corpus_table(kept)

    def _documents(self) -> Iterator[tuple[tuple[int, int], str]]:
        """((shard, row of the source), text) of each document the rule keeps, in order."""
        positioned = (((shard, row), text) for row, (shard, text) in enumerate(rows(self.corpus)))
        if self.corpus.name == "wikitext":  # rows are lines; an article ends at its last line
            positioned = wikitext_articles(positioned)
        for position, text in positioned:
            if text is None or not text.strip():
                continue
            if self.cfg.corpus_rule == "study":
                if not study_selects(text):
                    continue
                text = first_words(text)
            yield position, text


def _corpus_table(kept: list[tuple[str, int, int, int]]) -> pa.Table:
    texts, splits, source_rows, shards = zip(*kept)
    return pa.table({"text": pa.array(texts, pa.string()), "split": pa.array(splits, pa.int8()),
                     "source_row": pa.array(source_rows, pa.int64()), "shard": pa.array(shards, pa.int16())})


class _TaskBatches:
    """A task dataset's train and validation documents (never test) as batches(text, label, split, ...)."""

    def __init__(self, source, found, routing):
        self.source, self.found, self.routing = source, found, routing

    def __call__(self):
        from raygrid.data.documents import stream

        return stream(self.source, self.found, self.routing)


def _task_batches(source, cfg: DataConfig) -> _TaskBatches:
    from raygrid.data.documents import scan
    from raygrid.data.splits import SPLIT_IDS, UNUSED, route

    found = scan(source)
    routing = route(found.labels, cfg)
    for ids in routing.values():
        ids[ids == SPLIT_IDS["test"]] = UNUSED  # task MLM never reads the test documents
    return _TaskBatches(source, found, routing)
