"""The tokenized-document cache: tokenize once per (data, split policy, tokenizer, max_len), reuse forever.

The root is a local folder or a URI on shared storage (raygrid.data.storage).
Layout: `<root>/tokenized/<dataset>-<key>/{train,validation,test}.parquet` + `meta.json`, where
`key` hashes the source files' content, every DataConfig field that changes the rows, and the
tokenizer files. Rows hold unpadded `input_ids` (padding happens per batch, see batching.py).
Ray Data reads these files in every trial; nothing is tokenized inside a trial.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raygrid.spec.config import DataConfig
from raygrid.data import storage
from raygrid.data.sources import DataError, check_classes, load_raw
from raygrid.data.splits import SPLITS, apply_split_policy, cross_split_duplicates
from raygrid.data.stats import length_summary
from raygrid.data.verify import entry_problem, file_digests
from raygrid.spec.paths import is_local, resolve_location

CACHE_VERSION = 1  # bump when the cached row format changes
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


def cache_root(explicit: str | Path | None = None) -> str:
    """--cache-dir, else $RAYGRID_CACHE, else ~/.cache/raygrid: a local folder or a storage URI."""
    root = str(explicit or os.environ.get("RAYGRID_CACHE") or Path.home() / ".cache" / "raygrid")
    return root if storage.is_uri(root) else str(Path(root).expanduser().resolve())


@dataclass(frozen=True)
class PreparedData:
    """A finished cache entry (a local folder or a URI)."""

    folder: str
    meta: dict

    def split_path(self, split: str) -> str:
        return storage.join(self.folder, f"{split}.parquet")

    def read_split(self, split: str) -> pa.Table:
        return storage.read_parquet(self.split_path(split))

    @property
    def splits(self) -> list[str]:
        return list(self.meta["splits"])

    @property
    def num_labels(self) -> int:
        return len(self.meta["label_names"])

    @classmethod
    def load(cls, folder: str | Path) -> "PreparedData":
        folder = str(folder)
        return cls(folder, json.loads(storage.read_text(storage.join(folder, storage.META))))


def find_entry(root: str | Path, name: str) -> tuple[str, PreparedData | None]:
    """(location of entry `name` under root, the entry if it is complete and matches its meta.json).

    A damaged local entry is removed, so the caller rebuilds it; a damaged one on shared storage
    (which other runs may be reading) is refused, naming it.
    """
    folder = storage.join(str(root), "tokenized", name)
    if not storage.exists(storage.join(folder, storage.META)):
        return folder, None
    entry = PreparedData.load(folder)
    problem = entry_problem(folder, entry.meta)
    if problem is None:
        return folder, entry
    if storage.is_uri(folder):
        raise DataError(f"{folder}: damaged cache entry: {problem}; delete that folder to rebuild it")
    warnings.warn(f"{folder}: damaged cache entry ({problem}); rebuilding it", stacklevel=2)
    storage.remove_dir(folder)
    return folder, None


def new_entry_dir(folder: str) -> Path:
    """A local temporary folder to build an entry in (beside it when local, so publishing is a rename)."""
    if storage.is_uri(folder):
        return Path(tempfile.mkdtemp(prefix="raygrid-entry-"))
    Path(folder).parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{Path(folder).name}-", dir=Path(folder).parent))


def publish_entry(tmp: Path, folder: str, meta: dict) -> PreparedData:
    """Write meta.json (the completion marker, with every file's row count and hash) and make the entry visible."""
    meta = {**meta, "files": file_digests(tmp)}
    (tmp / storage.META).write_text(json.dumps(meta, indent=2))
    # mkdtemp makes the folder 0700; a cache shared by a group must stay readable by it (umask decides).
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)
    storage.publish(tmp, folder)
    return PreparedData.load(folder)


def prepare(cfg: DataConfig, tokenizer_location: str, root: str | Path, progress: bool = True,
            tokenize: Callable[[pa.Table, str, int], pa.Table] | None = None) -> PreparedData:
    """Return the cache entry for `cfg`, tokenizing (once) if it does not exist yet.

    `tokenize(table, tokenizer_location, max_len)` replaces the in-process tokenizer, e.g. with
    a Ray Data actor pool (raygrid.orchestration.launch.ray_tokenize); the rows it returns must be identical.
    """
    raw = load_raw(cfg)
    check_classes(raw.tables["train"], raw.origin.get("train", "train"), cfg.label_column)
    key = cache_key(cfg, raw.fingerprint, tokenizer_location)
    folder, entry = find_entry(root, f"{cfg.dataset}-{key}")
    if entry is not None:
        return entry
    tokenizer = load_tokenizer(tokenizer_location)
    splits = apply_split_policy(raw, cfg)
    check_classes(splits["train"], f"{raw.origin.get('train', 'train')} (after data.split/limit)", cfg.label_column)
    if raw.skipped:
        warnings.warn(f"{cfg.dataset}: skipped {sum(raw.skipped.values())} bad rows {raw.skipped} "
                      f"(data.bad_rows: skip)", stacklevel=2)
    leaks = {pair: n for pair, n in cross_split_duplicates(splits).items() if n}
    if leaks:
        warnings.warn(f"{cfg.dataset}: documents shared between splits {leaks}; scores on the later split are "
                      f"optimistic (for Hyperpartisan, subset: byarticle_semeval "
                      f"shares 2 documents instead of 58)", stacklevel=2)
    # Build in a temporary folder and publish it whole, so a crash never leaves a half-written
    # entry that a later run would mistake for a finished one.
    tmp = new_entry_dir(folder)
    stats = {}
    for split in SPLITS:
        if tokenize is None:
            table = tokenize_table(splits[split], tokenizer, cfg.max_len, desc=f"tokenize {cfg.dataset}/{split}",
                                   progress=progress)
        else:
            table = tokenize(splits[split], tokenizer_location, cfg.max_len)
        pq.write_table(table, tmp / f"{split}.parquet")
        stats[split] = length_stats(table, cfg.max_len)
    meta = {"version": CACHE_VERSION, "dataset": cfg.dataset, "key": key, "label_names": raw.label_names,
            "pad_token_id": tokenizer.pad_token_id, "max_len": cfg.max_len, "splits": stats, "leaks": leaks,
            "skipped_rows": raw.skipped,
            "data": cfg.rows_fields(), "tokenizer": tokenizer_location, "source": raw.origin}
    return publish_entry(tmp, folder, meta)


def tokenizer_location(model) -> str:
    """The tokenizer a model config uses: its own `tokenizer`, else its checkpoint's."""
    return model.tokenizer or model.checkpoint


def cache_key(cfg: DataConfig, source_fingerprint: str, tokenizer_location: str, kind: str | None = None) -> str:
    """Hash of what the entry's rows depend on; `kind` ("mlm") keeps other row layouts apart."""
    rows_fields = {k: v for k, v in cfg.rows_fields().items() if k != "path"}  # the content fingerprint stands for the path
    payload = {"v": CACHE_VERSION, "data": rows_fields, "source": source_fingerprint,
               "tokenizer": tokenizer_fingerprint(tokenizer_location)}
    if kind is not None:
        payload["kind"] = kind
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def tokenizer_fingerprint(location: str) -> str:
    """Content hash of a local tokenizer's files; the id itself for a hub tokenizer."""
    if not is_local(location):
        return location
    folder = Path(resolve_location(location))
    digest = hashlib.sha256()
    for name in TOKENIZER_FILES:
        if (folder / name).is_file():
            digest.update(name.encode() + (folder / name).read_bytes())
    return digest.hexdigest()[:16]


def load_tokenizer(location: str):
    """A fast HF tokenizer from a local folder, pkg:// folder, or hub id."""
    from transformers import AutoTokenizer  # late import: keeps `raygrid plan` light

    return AutoTokenizer.from_pretrained(resolve_location(location), use_fast=True)


def tokenize_table(table: pa.Table, tokenizer, max_len: int, desc: str = "", progress: bool = True,
                   batch_rows: int = 256) -> pa.Table:
    """table(text, label) -> table(input_ids: list<int32>, label, n_tokens, truncated)."""
    from tqdm.auto import tqdm

    texts = table["text"].to_pylist()
    ids, truncated = [], []
    for start in tqdm(range(0, len(texts), batch_rows), desc=desc, disable=not progress, unit="batch"):
        # Overflow windows tell, exactly, which documents lost tokens to max_len; keep window 0.
        enc = tokenizer(texts[start:start + batch_rows], truncation=True, max_length=max_len,
                        return_overflowing_tokens=True, return_attention_mask=False)
        owner = np.asarray(enc["overflow_to_sample_mapping"])
        first = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        counts = np.diff(np.r_[first, len(owner)])
        ids += [enc["input_ids"][i] for i in first]
        truncated += (counts > 1).tolist()
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int32, count=len(ids))
    return pa.table({
        "input_ids": pa.array(ids, type=pa.list_(pa.int32())),
        "label": table["label"],
        "n_tokens": pa.array(lengths),
        "truncated": pa.array(truncated, type=pa.bool_()),
    })


def length_stats(table: pa.Table, max_len: int) -> dict:
    lengths = table["n_tokens"].to_numpy()
    labels = table["label"].to_numpy()
    if len(lengths) == 0:
        return {"rows": 0}
    summary = length_summary(lengths)
    return {
        "rows": int(len(lengths)),
        "tokens": int(lengths.sum()),
        **{f"{name}_len": value for name, value in summary.items()},  # mean_len, median_len, p95_len, max_len
        "share_truncated": float(table["truncated"].to_numpy().mean()),
        "label_counts": {int(k): int(v) for k, v in zip(*np.unique(labels, return_counts=True))},
    }
