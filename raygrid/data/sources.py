"""Dataset adapters: a name -> the raw labelled splits as pyarrow tables with `text` and `label`.

Each adapter reads its default source (the HF hub) or, when `data.path` is set, local files laid
out as `<folder>/<split>.<ext>` or `<folder>/<dataset>_<split>.<ext>` (Parquet, CSV or JSONL).
The same validation runs on both, so a bad row fails with its file and row number.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc

from raygrid.data.hyperpartisan_hub import load_hub
from raygrid.data.raw import DataError, RawSplits
from raygrid.spec.config import DataConfig
from raygrid.spec.paths import resolve_location

SPLIT_ALIASES = {"train": ("train",), "validation": ("validation", "val", "dev"), "test": ("test",)}
EXTENSIONS = (".parquet", ".csv", ".jsonl", ".json")


def load_raw(cfg: DataConfig) -> RawSplits:
    """Dispatch to the adapter named by `cfg.dataset`."""
    if cfg.dataset not in ADAPTERS:
        raise DataError(f"data.dataset: {cfg.dataset} is an unlabelled corpus (read by raygrid.data.mlm_data), "
                        f"not a labelled dataset")
    return ADAPTERS[cfg.dataset](cfg)


def load_local(cfg: DataConfig, prefix: str | None = None, label_names: list[str] | None = None) -> RawSplits:
    """Read `<path>/<split>.<ext>` (or `<prefix>_<split>.<ext>`) files and validate them."""
    if cfg.path is None:
        raise DataError(f"data.path: dataset {cfg.dataset!r} needs a local folder (data.path)")
    folder = Path(resolve_location(cfg.path)).expanduser()
    if not folder.is_dir():
        raise DataError(f"data.path: {folder} is not a folder")
    files = {split: f for split in SPLIT_ALIASES if (f := find_split_file(folder, split, prefix))}
    if "train" not in files:
        names = ", ".join(f"{p}train{e}" for p in ([f"{prefix}_"] if prefix else []) + [""] for e in EXTENSIONS[:3])
        raise DataError(f"data.path: no train file in {folder} (looked for {names})")
    return _from_files(cfg, files, label_names)


def find_split_file(folder: Path, split: str, prefix: str | None) -> Path | None:
    """The file of `split` in `folder` under one of its aliases (`<prefix>_<alias>` before `<alias>`), or None."""
    for alias in SPLIT_ALIASES[split]:
        for stem in ([f"{prefix}_{alias}"] if prefix else []) + [alias]:
            if found := find_file(folder, stem):
                return found
    return None


def find_file(folder: Path, stem: str) -> Path | None:
    """`folder/<stem><ext>` for the first of EXTENSIONS that exists, or None."""
    return next((folder / f"{stem}{ext}" for ext in EXTENSIONS if (folder / f"{stem}{ext}").is_file()), None)


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


def read_labelled_counted(path: Path, text_column: str = "text", label_column: str = "label",
                          skip_bad: bool = False) -> tuple[pa.Table, int]:
    """(table(text, label), rows dropped): bad rows (empty text, no label) raise, or are dropped when skip_bad.

    Whole-file problems (unreadable, missing column, wrong column type) always raise.
    """
    table = read_table(path)
    for column in (text_column, label_column):
        if column not in table.column_names:
            raise DataError(f"{path}: missing column {column!r} (has {', '.join(table.column_names)})")
    text, label = table[text_column], table[label_column]
    if not pa.types.is_string(text.type) and not pa.types.is_large_string(text.type):
        raise DataError(f"{path}: column {text_column!r} must hold text, not {text.type}")
    if not pa.types.is_integer(label.type):
        raise DataError(f"{path}: column {label_column!r} must hold integer class ids, not {label.type}")
    out = pa.table({"text": text.cast(pa.string()), "label": label.cast(pa.int64())})
    bad = _bad_rows(path, text, label, raise_first=not skip_bad)
    if bad is None:
        return out, 0
    return out.filter(pc.invert(bad)), pc.sum(bad).as_py()


def _bad_rows(path: Path, text: pa.ChunkedArray, label: pa.ChunkedArray, raise_first: bool):
    """Boolean mask of rows with empty/missing text or a missing label (None if there are none)."""
    empty = pc.fill_null(pc.or_(pc.is_null(text), pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0)), True)
    missing = pc.is_null(label)
    if raise_first:
        bad = pc.indices_nonzero(empty)
        if len(bad):
            raise DataError(f"{path}: row {bad[0].as_py()}: empty or missing text ({len(bad)} such rows; "
                            f"data.bad_rows: skip drops them)")
        unlabelled = pc.indices_nonzero(missing)
        if len(unlabelled):
            raise DataError(f"{path}: row {unlabelled[0].as_py()}: missing label (data.bad_rows: skip drops such rows)")
        return None
    bad = pc.or_(empty, missing)
    return bad if pc.any(bad).as_py() else None


def check_labels(raw: RawSplits, skip_bad: bool = False) -> None:
    """Every split's labels must be class ids 0..len(label_names)-1 (or, with skip_bad, such rows are dropped)."""
    allowed = pa.array(range(len(raw.label_names)), pa.int64())
    for split, table in raw.tables.items():
        inside = pc.is_in(table["label"], value_set=allowed)
        outside = pc.indices_nonzero(pc.invert(inside))
        if len(outside) and skip_bad:
            raw.tables[split] = table.filter(inside)
            raw.skipped[split] = raw.skipped.get(split, 0) + len(outside)
        elif len(outside):
            row = outside[0].as_py()
            raise DataError(
                f"{raw.origin.get(split, split)}: row {row}: label {table['label'][row].as_py()} "
                f"is not one of 0..{len(raw.label_names) - 1} ({', '.join(raw.label_names)})"
            )


def check_classes(train: pa.Table, where: str, column: str) -> None:
    """A training split with fewer than two classes cannot train a classifier, yet would score a "perfect" F1."""
    classes = pc.unique(train["label"]).to_pylist()
    if len(classes) < 2:
        raise DataError(f"{where}: column {column!r}: the training split holds {len(classes)} class(es) "
                        f"{classes[:2]}; a classifier needs at least two")


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


ARXIV_LABELS = ["math.AC", "cs.CV", "cs.AI", "cs.SY", "math.GR", "cs.CE", "cs.PL", "cs.IT", "cs.DS", "cs.NE",
                "math.ST"]


def load_arxiv(cfg: DataConfig) -> RawSplits:
    """ArXiv-11 long documents (`ccdv/arxiv-classification`, configs `default` | `no_ref`)."""
    if cfg.path is not None:
        return load_local(cfg, prefix="arxiv", label_names=ARXIV_LABELS)
    subset = cfg.subset or "default"
    if subset not in ("default", "no_ref"):
        raise DataError(f"data.subset: arxiv has subsets default and no_ref, not {subset!r}")
    # The hub's Parquet conversion lives on the refs/convert/parquet branch as <config>/<split>/*.parquet.
    patterns = {split: f"{subset}/{split}/*.parquet" for split in ("train", "validation", "test")}
    return _load_hub_parquet(cfg, "ccdv/arxiv-classification", patterns, ARXIV_LABELS,
                             revision="refs/convert/parquet")


def load_hyperpartisan(cfg: DataConfig) -> RawSplits:
    """Hyperpartisan News Detection (SemEval-2019 Task 4).

    Local folder (`data.path`): subset `byarticle` (default) reads the Longformer 516/64/65 split
    (`hyperpartisan_{train,validation,test}.*`), whose test shares articles with train (a warning
    says so at tokenization); `byarticle_semeval` trains on all 645 by-article articles and tests
    on the official 628-article test set (`hyperpartisan_byarticle_all.*`,
    `hyperpartisan_semeval_test.*`). From the hub: `byarticle` (645 + the official test from
    Zenodo) or `bypublisher` (articles of >= 7,000 characters, as in the study).
    """
    names = ["false", "true"]
    subset = cfg.subset or "byarticle"
    if cfg.path is not None and subset == "byarticle_semeval":
        folder = Path(resolve_location(cfg.path)).expanduser()
        files = {"train": find_file(folder, "hyperpartisan_byarticle_all"),
                 "test": find_file(folder, "hyperpartisan_semeval_test")}
        if None in files.values():
            raise DataError(f"data.path: {folder} lacks hyperpartisan_byarticle_all.* or hyperpartisan_semeval_test.*")
        return _from_files(cfg, files, names)
    if cfg.path is not None:
        if subset != "byarticle":  # silently reading the Longformer split instead would mislabel the cell
            raise DataError(f"data.subset: a local hyperpartisan folder holds byarticle or byarticle_semeval, "
                            f"not {subset!r} (bypublisher comes from the hub: drop data.path)")
        return load_local(cfg, prefix="hyperpartisan", label_names=names)
    if subset not in ("byarticle", "bypublisher"):
        raise DataError(f"data.subset: hyperpartisan from the hub is byarticle or bypublisher, not {subset!r}")
    tables = load_hub(subset, zenodo_test=True)
    tables = {("test" if k == "semeval_test" else k): t.select(["text", "label"]) for k, t in tables.items()}
    raw = RawSplits(tables, names, {k: f"SemEvalWorkshop/hyperpartisan_news_detection:{subset}" for k in tables},
                    fingerprint=_fingerprint_tables(tables))
    check_labels(raw, cfg.bad_rows == "skip")
    return raw


def _from_files(cfg: DataConfig, files: dict[str, Path], label_names: list[str] | None = None) -> RawSplits:
    return _read_splits(cfg, {split: [f] for split, f in files.items()}, label_names,
                        {split: str(f) for split, f in files.items()})


def _read_splits(cfg: DataConfig, files: dict[str, list[Path]], label_names: list[str] | None,
                 origin: dict[str, str]) -> RawSplits:
    """Read and validate each split's files once; label names default to train's sorted label values."""
    skip = cfg.bad_rows == "skip"
    tables, skipped = {}, {}
    for split, parts in files.items():
        read = [read_labelled_counted(p, cfg.text_column, cfg.label_column, skip) for p in parts]
        tables[split] = pa.concat_tables([table for table, _ in read])
        if dropped := sum(n for _, n in read):
            skipped[split] = dropped
    if label_names is None:
        label_names = [str(v) for v in sorted(pc.unique(tables["train"]["label"]).to_pylist())]
    every_file = [path for parts in files.values() for path in parts]
    raw = RawSplits(tables, label_names, origin, fingerprint=_fingerprint_files(every_file), skipped=skipped)
    check_classes(tables["train"], origin.get("train", "train"), cfg.label_column)  # before label ids: clearer
    check_labels(raw, skip)
    return raw


def _fingerprint_tables(tables: dict[str, pa.Table]) -> str:
    digest = hashlib.sha256()
    for split in sorted(tables):
        for text in tables[split]["text"].to_pylist():
            digest.update(text.encode())
    return digest.hexdigest()[:16]


def _load_hub_parquet(cfg: DataConfig, repo_id: str, patterns: dict[str, str], label_names,
                      revision: str | None = None) -> RawSplits:
    """Fetch a hub dataset's Parquet files (cached by huggingface_hub) and read them."""
    from huggingface_hub import snapshot_download  # imported late: only hub runs need it

    root = Path(snapshot_download(repo_id, repo_type="dataset", revision=revision,
                                  allow_patterns=list(patterns.values())))
    files = {split: sorted(root.glob(pattern)) for split, pattern in patterns.items()}
    for split, parts in files.items():
        if not parts:
            raise DataError(f"{repo_id}: no files match {patterns[split]}")
    return _read_splits(cfg, files, label_names, {s: f"{repo_id}:{p}" for s, p in patterns.items()})


def load_generic(cfg: DataConfig) -> RawSplits:
    """Any local labelled files (`dataset: local`)."""
    return load_local(cfg)


ADAPTERS: dict[str, Callable[[DataConfig], RawSplits]] = {
    "imdb": load_imdb,
    "hyperpartisan": load_hyperpartisan,
    "arxiv": load_arxiv,
    "local": load_generic,
}
