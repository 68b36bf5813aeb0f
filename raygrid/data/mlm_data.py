"""Token blocks for masked-language-model cells, cached like the classification data.

Two kinds of text feed an `mlm` cell:
- a corpus (`wikipedia`, `wikitext`): documents streamed from local Parquet files or the HF hub;
  each document goes to train or validation (share `val_fraction`, drawn with `split_seed`), so no
  document is split across the two;
- a task dataset (imdb, hyperpartisan, arxiv, local): the train and validation texts of its split
  policy — task-adaptive pretraining never sees the task's test documents.
Documents are concatenated per split and cut into `max_len` blocks (raygrid.data.mlm_text.BlockPacker).
Layout: `<root>/tokenized/mlm-<dataset>-<key>/{train,validation}.parquet` + `meta.json`; rows hold
`input_ids` (exactly max_len ids) and `n_tokens`. Masking happens per batch in training, not here.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raygrid.spec.config import CORPORA, DataConfig
from raygrid.data.cache import (CACHE_VERSION, PreparedData, cache_key, find_entry, load_tokenizer, new_entry_dir,
                                publish_entry)
from raygrid.data.mlm_text import BlockPacker, chain_batches, hub_files, iter_texts, local_files, wikitext_articles

MLM_SPLITS = ("train", "validation")
ROWS_PER_GROUP = 2048  # blocks per Parquet row group: bounded memory for a 600k-article corpus


def prepare_mlm(cfg: DataConfig, tokenizer_location: str, root: str | Path, progress: bool = True) -> PreparedData:
    """Return the cache entry of MLM blocks for `cfg`, building it (once) if needed."""
    documents, fingerprint, origin = _documents(cfg)
    key = cache_key(cfg, fingerprint, tokenizer_location, kind="mlm")
    folder, entry = find_entry(root, f"mlm-{cfg.dataset}-{key}")
    if entry is not None:
        return entry
    tokenizer = load_tokenizer(tokenizer_location)
    tokenizer.model_max_length = 1 << 40  # documents are cut into blocks here, not truncated: no length warnings
    if tokenizer.mask_token_id is None:
        raise ValueError(f"model.tokenizer: {tokenizer_location} has no [MASK] token; it cannot train an MLM")
    tmp = new_entry_dir(folder)  # built aside, published whole
    stats = _write_blocks(documents, tokenizer, cfg.max_len, tmp, progress, f"mlm blocks {cfg.dataset}",
                          np.random.default_rng(cfg.split_seed))
    for split in MLM_SPLITS:
        if stats[split]["rows"] == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ValueError(f"data: {cfg.dataset} yields no {split} block of {cfg.max_len} tokens "
                             f"(too little text: raise limit.train or val_fraction, or lower data.max_len)")
    meta = {"version": CACHE_VERSION, "kind": "mlm", "dataset": cfg.dataset, "key": key, "label_names": [],
            "pad_token_id": tokenizer.pad_token_id, "mask_token_id": tokenizer.mask_token_id,
            "vocab_size": len(tokenizer), "special_ids": sorted(set(tokenizer.all_special_ids)),
            "max_len": cfg.max_len, "splits": stats, "data": cfg.rows_fields(), "tokenizer": tokenizer_location,
            "source": origin}
    return publish_entry(tmp, folder, meta)


def _documents(cfg: DataConfig) -> tuple[Iterator[tuple[str, str]], str, dict]:
    """(split, text) pairs in a stable order, a cheap source fingerprint, and where they come from."""
    if cfg.dataset in CORPORA:
        files = local_files(cfg.path) if cfg.path else hub_files(cfg.dataset)
        fingerprint = hashlib.sha256(json.dumps([(f.name, f.stat().st_size) for f in files]).encode()).hexdigest()[:16]
        texts = iter_texts(files, column=cfg.text_column)
        if cfg.dataset == "wikitext":
            texts = wikitext_articles(texts)
        origin = {"files": ", ".join(str(f) for f in files[:3]) + (" ..." if len(files) > 3 else "")}
        return _route(texts, cfg), fingerprint, origin
    from raygrid.data.sources import load_raw
    from raygrid.data.splits import apply_split_policy

    raw = load_raw(cfg)
    splits = apply_split_policy(raw, cfg)
    pairs = ((split, text) for split in MLM_SPLITS for text in splits[split]["text"].to_pylist())
    return pairs, raw.fingerprint, dict(raw.origin)


def _route(texts: Iterable[str], cfg: DataConfig) -> Iterator[tuple[str, str]]:
    """Send each corpus document to train or validation (seeded, order-stable), up to limit.train documents."""
    rng = np.random.default_rng(cfg.split_seed)
    for count, text in enumerate(texts):
        if cfg.limit.train is not None and count >= cfg.limit.train:
            return
        yield ("validation" if rng.random() < cfg.val_fraction else "train"), text


def _write_blocks(documents, tokenizer, block_len: int, folder: Path, progress: bool, desc: str,
                  rng: np.random.Generator) -> dict:
    """Pack documents into blocks and write them, each row group shuffled (seeded).

    Shuffling inside row groups of 2,048 blocks mixes neighbouring articles, so a training batch is
    not a run of consecutive chunks of one article (Ray's local shuffle buffer is only a few
    batches wide); memory stays bounded.
    """
    from tqdm.auto import tqdm

    packers = {s: BlockPacker(block_len, tokenizer.cls_token_id, tokenizer.sep_token_id) for s in MLM_SPLITS}
    pending: dict[str, list[np.ndarray]] = {s: [] for s in MLM_SPLITS}
    schema = pa.schema([("input_ids", pa.list_(pa.int32())), ("n_tokens", pa.int32())])
    writers = {s: pq.ParquetWriter(folder / f"{s}.parquet", schema) for s in MLM_SPLITS}
    stats = {s: {"rows": 0, "tokens": 0, "documents": 0} for s in MLM_SPLITS}

    def flush(split: str) -> None:
        blocks = [pending[split][i] for i in rng.permutation(len(pending[split]))]
        if blocks:
            writers[split].write_table(pa.table({"input_ids": pa.array([b.tolist() for b in blocks], pa.list_(pa.int32())),
                                                 "n_tokens": pa.array([block_len] * len(blocks), pa.int32())},
                                                schema=schema))
            stats[split]["rows"] += len(blocks)
            stats[split]["tokens"] += block_len * len(blocks)
            pending[split] = []

    bar = tqdm(desc=desc, unit="doc", disable=not progress)
    try:
        for batch in chain_batches(documents, 256):
            ids = tokenizer([text for _, text in batch], add_special_tokens=False)["input_ids"]
            for (split, _), doc_ids in zip(batch, ids):
                pending[split].extend(packers[split].add(doc_ids))
                stats[split]["documents"] += 1
                if len(pending[split]) >= ROWS_PER_GROUP:
                    flush(split)
            bar.update(len(batch))
        for split in MLM_SPLITS:
            flush(split)
    finally:
        bar.close()
        for writer in writers.values():
            writer.close()
    for split in MLM_SPLITS:
        stats[split].update(mean_len=float(block_len), max_len=block_len, share_truncated=0.0)
    return stats
