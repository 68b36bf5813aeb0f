"""The tokenized-document cache: tokenize once per (data, split policy, tokenizer, max_len), reuse forever.

The root is a local folder or a URI on shared storage (raygrid.data.storage).
Layout: `<root>/tokenized/<dataset>-<key>/{train,validation,test}.parquet` + `meta.json`, where
`key` hashes the source files' content, every DataConfig field that changes the rows, and the
tokenizer files. Rows hold unpadded `input_ids` (padding happens per batch, see batching.py).
Building streams: labels are scanned and routed to splits first, then texts are read, tokenized
(here or on a Ray Data actor pool) and written in row groups batch by batch, so memory does not
grow with the dataset (raygrid.data.documents, raygrid.data.tokenize, raygrid.data.cache_writer).
Nothing is tokenized inside a trial.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from raygrid.spec.config import DataConfig
from raygrid.data import builds, storage
from raygrid.data.cache_writer import DOCUMENT_SCHEMA, SplitFiles, drain, length_stats, rows_per_group
from raygrid.data.documents import DocumentSource, Scan, check_classes_of, scan, stream
from raygrid.data.raw import DataError
from raygrid.data.sources import opened, resolve
from raygrid.data.splits import SPLIT_IDS, SPLITS, Routing, duplicate_counts, route
from raygrid.data.tokenize import Tokenize, TokenizeSpec, in_process, load_tokenizer
from raygrid.data.verify import entry_problem, file_digests
from raygrid.spec.paths import is_local, resolve_location
from raygrid.spec.redact import redact_tree

__all__ = ["CACHE_VERSION", "PreparedData", "cache_key", "cache_root", "find_entry", "length_stats",
           "load_tokenizer", "prepare", "publish_entry", "tokenizer_location"]

# 2: `split: study` is the study's exact rule (before: a merged 80/10/10 re-split, now `resplit`).
CACHE_VERSION = 3  # bump when the cached rows of an unchanged config change (3: train rows permuted)
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

    def stream_split(self, split: str, rows: int = 256):
        """The split's rows as Arrow record batches of `rows`, in order, one row group in memory at a time."""
        import pyarrow.parquet as pq

        filesystem, path = storage.filesystem_of(self.split_path(split))
        with filesystem.open_input_file(path) as file:
            yield from pq.ParquetFile(file).iter_batches(batch_size=rows)

    @property
    def splits(self) -> list[str]:
        return list(self.meta["splits"])

    @property
    def split_rows(self) -> dict[str, int]:
        """{split: rows} from meta.json (no data read)."""
        return {split: stats.get("rows", 0) for split, stats in self.meta["splits"].items()}

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


def publish_entry(tmp: Path, folder: str, meta: dict) -> PreparedData:
    """Write meta.json (the completion marker, with every file's row count and hash) and make the entry visible."""
    builds.unmark(tmp)
    # credentials in a data URI never reach the cache (raygrid.spec.redact); the entry's key hashed the real one
    meta = {**redact_tree(meta), "files": file_digests(tmp)}
    (tmp / storage.META).write_text(json.dumps(meta, indent=2))
    # mkdtemp makes the folder 0700; a cache shared by a group must stay readable by it (umask decides).
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)
    storage.publish(tmp, folder)
    return PreparedData.load(folder)


def prepare(cfg: DataConfig, tokenizer_location: str, root: str | Path, progress: bool = True,
            tokenize: Tokenize | None = None) -> PreparedData:
    """Return the cache entry for `cfg`, tokenizing (once) if it does not exist yet.

    `tokenize` replaces the in-process tokenizer (raygrid.data.tokenize.in_process), e.g. with a
    Ray Data actor pool (raygrid.orchestration.tokenize_pool.ray_tokenize): same rows, same files.
    """
    resolved = resolve(cfg)  # files and their fingerprint: a cache hit reads no document
    key = cache_key(cfg, resolved.source.fingerprint, tokenizer_location)
    folder, entry = find_entry(root, f"{cfg.dataset}-{key}")
    if entry is not None:
        return entry
    with opened(resolved) as source:
        found = scan(source)
        routing = route(found.labels, cfg)
        _check_routed(cfg, source, found, routing)
        with builds.build_dir(folder, storage.is_uri(folder)) as tmp:
            stats, leaks = _write(source, found, routing, TokenizeSpec(tokenizer_location, cfg.max_len), tmp,
                                  tokenize or in_process, progress, cfg.split_seed)
            if found.skipped:
                warnings.warn(f"{cfg.dataset}: skipped {sum(found.skipped.values())} bad rows {found.skipped} "
                              f"(data.bad_rows: skip)", stacklevel=2)
            if leaks:
                warnings.warn(f"{cfg.dataset}: documents shared between splits {leaks}; scores on the later split "
                              f"are optimistic (for Hyperpartisan, subset: byarticle_semeval shares 2 documents "
                              f"instead of 58)", stacklevel=2)
            meta = {"version": CACHE_VERSION, "dataset": cfg.dataset, "key": key, "label_names": found.label_names,
                    "pad_token_id": load_tokenizer(tokenizer_location).pad_token_id, "max_len": cfg.max_len,
                    "splits": stats, "leaks": leaks, "skipped_rows": found.skipped, "data": cfg.rows_fields(),
                    "tokenizer": tokenizer_location, "source": {p.name: p.origin for p in source.parts}}
            return publish_entry(tmp, folder, meta)


def _check_routed(cfg: DataConfig, source: DocumentSource, found: Scan, routing: Routing) -> None:
    """Refuse, before tokenizing, a training split of one class or an empty validation split."""
    train = np.concatenate([found.labels[part][ids == SPLIT_IDS["train"]] for part, ids in routing.items()])
    where = f"{source.parts[0].origin if source.parts else cfg.dataset} (after data.split/limit)"
    check_classes_of(train, where, cfg.label_column)
    if not any((ids == SPLIT_IDS["validation"]).any() for ids in routing.values()):
        raise DataError(f"data.val_fraction: {cfg.dataset} has no validation rows (val_fraction "
                        f"{cfg.val_fraction}); fine-tuning picks its best epoch on validation")


class _Batches:
    """The routed documents as text batches: picklable, so a Ray read task can stream them too."""

    def __init__(self, source: DocumentSource, found: Scan, routing: Routing):
        self.source, self.found, self.routing = source, found, routing

    def __call__(self):
        return stream(self.source, self.found, self.routing)


def _write(source, found, routing, spec: TokenizeSpec, folder: Path, tokenize: Tokenize, progress: bool,
           split_seed: int):
    """Tokenize the routed documents into the split files; (per-split statistics, cross-split duplicates).

    The training split is stored in a random order seeded by data.split_seed: trials shuffle only
    within bounded windows of the stream (raygrid.data.stream_batches), and sources are often
    sorted by label (IMDB: all negatives, then all positives). Evaluation splits keep source order.
    """
    from tqdm.auto import tqdm

    train_rows = sum(int((ids == SPLIT_IDS["train"]).sum()) for ids in routing.values())
    permute = {"train": np.random.default_rng([split_seed, 0x5EED]).permutation(train_rows)}
    files = SplitFiles(folder, SPLITS, DOCUMENT_SCHEMA, rows_per_group(spec.max_len),
                       on_group=lambda: builds.touch(folder), permute=permute)
    hashes: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
    total = sum(int((ids != -1).sum()) for ids in routing.values())
    bar = tqdm(total=total, desc=f"tokenize {source.dataset}", unit="doc", disable=not progress)

    def take(table: pa.Table) -> None:
        files.add_routed(table, SPLITS)
        split_ids = table["split"].to_numpy()
        for index, split in enumerate(SPLITS):
            hashes[split].append(table["text_hash"].to_numpy()[split_ids == index])

    drain(tokenize(_Batches(source, found, routing), spec), files, take, bar)
    stats = files.close()
    leaks = duplicate_counts({split: np.concatenate(parts) for split, parts in hashes.items()})
    return stats, {pair: n for pair, n in leaks.items() if n}


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
