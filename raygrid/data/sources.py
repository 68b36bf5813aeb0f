"""Dataset adapters: a name -> the raw labelled splits as pyarrow tables with `text` and `label`.

Each adapter reads its default source (the HF hub) or, when `data.path` is set, local files laid
out as `<folder>/<split>.<ext>` or `<folder>/<dataset>_<split>.<ext>` (Parquet, CSV or JSONL).
The same validation runs on both, so a bad row fails with its file and row number.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc

from raygrid.config import DataConfig
from raygrid.paths import resolve_location

SPLIT_ALIASES = {"train": ("train",), "validation": ("validation", "val", "dev"), "test": ("test",)}
EXTENSIONS = (".parquet", ".csv", ".jsonl", ".json")


class DataError(ValueError):
    """Bad input data; the message names the file (and row) at fault."""


@dataclass
class RawSplits:
    """Labelled splits as read, before any split policy; `files` fingerprints the source."""

    tables: dict[str, pa.Table]  # split -> table(text: string, label: int64)
    label_names: list[str]
    origin: dict[str, str] = field(default_factory=dict)  # split -> file or hub id, for messages
    fingerprint: str = ""


def load_raw(cfg: DataConfig) -> RawSplits:
    """Dispatch to the adapter named by `cfg.dataset`."""
    return ADAPTERS[cfg.dataset](cfg)


def load_local(cfg: DataConfig, prefix: str | None = None, label_names: list[str] | None = None) -> RawSplits:
    """Read `<path>/<split>.<ext>` (or `<prefix>_<split>.<ext>`) files and validate them."""
    if cfg.path is None:
        raise DataError(f"data.path: dataset {cfg.dataset!r} needs a local folder (data.path)")
    folder = Path(resolve_location(cfg.path)).expanduser()
    if not folder.is_dir():
        raise DataError(f"data.path: {folder} is not a folder")
    files = {split: f for split in SPLIT_ALIASES if (f := _find_split_file(folder, split, prefix))}
    if "train" not in files:
        names = ", ".join(f"{p}train{e}" for p in ([f"{prefix}_"] if prefix else []) + [""] for e in EXTENSIONS[:3])
        raise DataError(f"data.path: no train file in {folder} (looked for {names})")
    tables = {split: read_labelled(f, cfg.text_column, cfg.label_column) for split, f in files.items()}
    if label_names is None:
        label_names = [str(v) for v in sorted(pc.unique(tables["train"]["label"]).to_pylist())]
    origin = {split: str(f) for split, f in files.items()}
    raw = RawSplits(tables, label_names, origin, fingerprint=_fingerprint_files(files.values()))
    check_labels(raw)
    return raw


def _find_split_file(folder: Path, split: str, prefix: str | None) -> Path | None:
    for alias in SPLIT_ALIASES[split]:
        for stem in ([f"{prefix}_{alias}"] if prefix else []) + [alias]:
            for ext in EXTENSIONS:
                if (candidate := folder / f"{stem}{ext}").is_file():
                    return candidate
    return None


def read_table(path: Path) -> pa.Table:
    """Read one Parquet/CSV/JSONL file into a pyarrow table."""
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq
            return pq.read_table(path)
        if path.suffix == ".csv":
            import pyarrow.csv as pcsv
            return pcsv.read_csv(path)
        if path.suffix in (".jsonl", ".json"):
            import pyarrow.json as pjson
            return pjson.read_json(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"{path}: unreadable ({str(err).splitlines()[0]})") from None
    raise DataError(f"{path}: unsupported file type (use {', '.join(EXTENSIONS)})")


def read_labelled(path: Path, text_column: str = "text", label_column: str = "label") -> pa.Table:
    """Read a file and return table(text, label) after checking every row."""
    table = read_table(path)
    for column in (text_column, label_column):
        if column not in table.column_names:
            raise DataError(f"{path}: missing column {column!r} (has {', '.join(table.column_names)})")
    text, label = table[text_column], table[label_column]
    if not pa.types.is_string(text.type) and not pa.types.is_large_string(text.type):
        raise DataError(f"{path}: column {text_column!r} must hold text, not {text.type}")
    if not pa.types.is_integer(label.type):
        raise DataError(f"{path}: column {label_column!r} must hold integer class ids, not {label.type}")
    _check_rows(path, text, label)
    return pa.table({"text": text.cast(pa.string()), "label": label.cast(pa.int64())})


def _check_rows(path: Path, text: pa.ChunkedArray, label: pa.ChunkedArray) -> None:
    empty = pc.or_(pc.is_null(text), pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0))
    bad = pc.indices_nonzero(pc.fill_null(empty, True))
    if len(bad):
        raise DataError(f"{path}: row {bad[0].as_py()}: empty or missing text ({len(bad)} such rows)")
    missing = pc.indices_nonzero(pc.is_null(label))
    if len(missing):
        raise DataError(f"{path}: row {missing[0].as_py()}: missing label")


def check_labels(raw: RawSplits) -> None:
    """Every split's labels must be class ids 0..len(label_names)-1."""
    allowed = pa.array(range(len(raw.label_names)), pa.int64())
    for split, table in raw.tables.items():
        outside = pc.indices_nonzero(pc.invert(pc.is_in(table["label"], value_set=allowed)))
        if len(outside):
            row = outside[0].as_py()
            raise DataError(
                f"{raw.origin.get(split, split)}: row {row}: label {table['label'][row].as_py()} "
                f"is not one of 0..{len(raw.label_names) - 1} ({', '.join(raw.label_names)})"
            )


def _fingerprint_files(paths) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


# --- adapters -------------------------------------------------------------------------------

def load_imdb(cfg: DataConfig) -> RawSplits:
    """IMDB 25k/25k (`stanfordnlp/imdb`); validation is carved from train by the split policy."""
    if cfg.path is not None:
        return load_local(cfg, prefix="imdb", label_names=["neg", "pos"])
    return _load_hub_parquet(cfg, "stanfordnlp/imdb", {"train": "plain_text/train-*.parquet",
                                                       "test": "plain_text/test-*.parquet"}, ["neg", "pos"])


def load_hyperpartisan(cfg: DataConfig) -> RawSplits:
    """Hyperpartisan by-article (SemEval-2019 Task 4); local Parquet with the Longformer split."""
    if cfg.path is None:
        raise DataError(
            "data.path: hyperpartisan from the HF hub (script-based XML archives) is not supported yet; "
            "point data.path at a folder with hyperpartisan_{train,validation,test}.parquet"
        )
    return load_local(cfg, prefix="hyperpartisan", label_names=["false", "true"])


def _load_hub_parquet(cfg: DataConfig, repo_id: str, patterns: dict[str, str], label_names) -> RawSplits:
    """Fetch a hub dataset's Parquet files (cached by huggingface_hub) and read them."""
    from huggingface_hub import snapshot_download  # imported late: only hub runs need it

    root = Path(snapshot_download(repo_id, repo_type="dataset", allow_patterns=list(patterns.values())))
    tables, files = {}, []
    for split, pattern in patterns.items():
        parts = sorted(root.glob(pattern))
        if not parts:
            raise DataError(f"{repo_id}: no files match {pattern}")
        files += parts
        tables[split] = pa.concat_tables([read_labelled(p, cfg.text_column, cfg.label_column) for p in parts])
    raw = RawSplits(tables, label_names, {s: f"{repo_id}:{p}" for s, p in patterns.items()},
                    fingerprint=_fingerprint_files(files))
    check_labels(raw)
    return raw


def load_generic(cfg: DataConfig) -> RawSplits:
    """Any local labelled files (`dataset: local`)."""
    return load_local(cfg)


ADAPTERS: dict[str, Callable[[DataConfig], RawSplits]] = {
    "imdb": load_imdb,
    "hyperpartisan": load_hyperpartisan,
    "local": load_generic,
}
