"""Dataset adapters: a name -> where its labelled documents are (raygrid.data.documents.DocumentSource).

Each adapter reads its default source (the HF hub) or, when `data.path` is set, local files laid
out as `<folder>/<split>.<ext>` or `<folder>/<dataset>_<split>.<ext>` (Parquet, CSV or JSONL).
The same checks run on both, so a bad row fails with its file and row number. Hyperpartisan's
XML archives (hub, or a local folder of them) are converted to Parquet once per use, streamed.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa

from raygrid.data import builds
from raygrid.data import hyperpartisan_hub as hp
from raygrid.data.documents import (DocumentSource, Part, fingerprint_files, read_all,
                                    read_batches, with_parts)
from raygrid.data.raw import DataError, RawSplits
from raygrid.spec.config import DataConfig
from raygrid.spec.paths import resolve_location

SPLIT_ALIASES = {"train": ("train",), "validation": ("validation", "val", "dev"), "test": ("test",)}
EXTENSIONS = (".parquet", ".csv", ".jsonl", ".json")


@dataclass(frozen=True)
class Resolved:
    """A dataset's source, and for XML archives how to convert them to Parquet first (into a folder)."""

    source: DocumentSource
    convert: Callable[[Path], dict[str, Path]] | None = None


def resolve(cfg: DataConfig) -> Resolved:
    """Dispatch to the adapter named by `cfg.dataset` (downloads hub files; converts nothing yet)."""
    if cfg.dataset not in ADAPTERS:
        raise DataError(f"data.dataset: {cfg.dataset} is an unlabelled corpus (read by raygrid.data.mlm_data), "
                        f"not a labelled dataset")
    return ADAPTERS[cfg.dataset](cfg)


@contextlib.contextmanager
def opened(resolved: Resolved) -> Iterator[DocumentSource]:
    """The source ready to read: XML archives converted into a temporary folder, removed afterwards."""
    if resolved.convert is None:
        yield resolved.source
        return
    with builds.scratch_dir() as folder:  # marked: a killed run's folder is removed by the next (builds.sweep)
        yield with_parts(resolved.source, resolved.convert(folder))


def load_raw(cfg: DataConfig) -> RawSplits:
    """Every shipped split in memory (TF-IDF, `data stats`); tokenization streams instead (raygrid.data.cache)."""
    with opened(resolve(cfg)) as source:
        return read_all(source)


# --- files ------------------------------------------------------------------------------------

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
    return pa.Table.from_batches(list(read_batches(path)))


def _files_source(cfg: DataConfig, files: dict[str, list[Path]], origin: dict[str, str],
                  label_names: list[str] | None, text_rule: str | None = None) -> Resolved:
    parts = tuple(Part(split, tuple(str(f) for f in files[split]), origin[split])
                  for split in ("train", "validation", "test") if split in files)
    every_file = [f for parts_files in files.values() for f in parts_files]
    source = DocumentSource(cfg.dataset, parts, tuple(label_names) if label_names else None,
                            fingerprint_files(every_file), cfg.text_column, cfg.label_column, text_rule,
                            skip_bad=cfg.bad_rows == "skip")
    return Resolved(source)


def local_source(cfg: DataConfig, prefix: str | None = None, label_names: list[str] | None = None,
                 text_rule: str | None = None) -> Resolved:
    """`<path>/<split>.<ext>` (or `<prefix>_<split>.<ext>`) files."""
    folder = _folder(cfg)
    files = {split: f for split in SPLIT_ALIASES if (f := find_split_file(folder, split, prefix))}
    if "train" not in files:
        names = ", ".join(f"{p}train{e}" for p in ([f"{prefix}_"] if prefix else []) + [""] for e in EXTENSIONS[:3])
        raise DataError(f"data.path: no train file in {folder} (looked for {names})")
    return _files_source(cfg, {s: [f] for s, f in files.items()}, {s: str(f) for s, f in files.items()},
                         label_names, text_rule)


def _folder(cfg: DataConfig) -> Path:
    if cfg.path is None:
        raise DataError(f"data.path: dataset {cfg.dataset!r} needs a local folder (data.path)")
    folder = Path(resolve_location(cfg.path)).expanduser()
    if not folder.is_dir():
        raise DataError(f"data.path: {folder} is not a folder")
    return folder


# --- adapters -------------------------------------------------------------------------------

def load_imdb(cfg: DataConfig) -> Resolved:
    """IMDB 25k/25k (`stanfordnlp/imdb`); validation is carved from train by the split policy."""
    names, rule = ["neg", "pos"], "imdb-study" if cfg.text_rule == "study" else None
    if cfg.path is not None:
        return local_source(cfg, prefix="imdb", label_names=names, text_rule=rule)
    return _hub_parquet(cfg, "stanfordnlp/imdb", {"train": "plain_text/train-*.parquet",
                                                  "test": "plain_text/test-*.parquet"}, names, text_rule=rule)


ARXIV_LABELS = ["math.AC", "cs.CV", "cs.AI", "cs.SY", "math.GR", "cs.CE", "cs.PL", "cs.IT", "cs.DS", "cs.NE",
                "math.ST"]


def load_arxiv(cfg: DataConfig) -> Resolved:
    """ArXiv-11 long documents (`ccdv/arxiv-classification`, configs `default` | `no_ref`)."""
    if cfg.path is not None:
        return local_source(cfg, prefix="arxiv", label_names=ARXIV_LABELS)
    subset = cfg.subset or "default"
    if subset not in ("default", "no_ref"):
        raise DataError(f"data.subset: arxiv has subsets default and no_ref, not {subset!r}")
    # The hub's Parquet conversion lives on the refs/convert/parquet branch as <config>/<split>/*.parquet.
    patterns = {split: f"{subset}/{split}/*.parquet" for split in ("train", "validation", "test")}
    return _hub_parquet(cfg, "ccdv/arxiv-classification", patterns, ARXIV_LABELS, revision="refs/convert/parquet")


def load_hyperpartisan(cfg: DataConfig) -> Resolved:
    """Hyperpartisan News Detection (SemEval-2019 Task 4).

    Local Parquet (`data.path`): subset `byarticle` (default) reads the Longformer 516/64/65 split
    (`hyperpartisan_{train,validation,test}.*`), whose test shares articles with train (a warning
    says so at tokenization); `byarticle_semeval` trains on all 645 by-article articles and tests
    on the official 628-article test set. Subset `bypublisher` reads the original XML archives
    (`articles-training-bypublisher-*.zip|xml` and their ground truth) from the hub, or from a
    local folder of them; articles of >= 7,000 characters. Hub `byarticle`: 645 + the official test.
    """
    subset = cfg.subset or "byarticle"
    if subset == "bypublisher" or cfg.path is None:
        return _hyperpartisan_xml(cfg, subset)
    if cfg.text_rule == "study":
        raise DataError("data.text_rule: study takes Hyperpartisan's paragraph texts from the XML archives; "
                        f"{cfg.path} holds Parquet")
    names = hp.LABEL_NAMES
    if subset == "byarticle_semeval":
        folder = _folder(cfg)
        files = {"train": find_file(folder, "hyperpartisan_byarticle_all"),
                 "test": find_file(folder, "hyperpartisan_semeval_test")}
        if None in files.values():
            raise DataError(f"data.path: {folder} lacks hyperpartisan_byarticle_all.* or hyperpartisan_semeval_test.*")
        return _files_source(cfg, {s: [f] for s, f in files.items()}, {s: str(f) for s, f in files.items()}, names)
    if subset != "byarticle":  # silently reading the Longformer split instead would mislabel the cell
        raise DataError(f"data.subset: a local hyperpartisan Parquet folder holds byarticle or byarticle_semeval, "
                        f"not {subset!r}")
    return local_source(cfg, prefix="hyperpartisan", label_names=names)


def _hyperpartisan_xml(cfg: DataConfig, subset: str) -> Resolved:
    """The XML archives (hub or local folder) -> a source converted to Parquet when opened."""
    if subset not in ("byarticle", "bypublisher"):
        raise DataError(f"data.subset: hyperpartisan from the hub is byarticle or bypublisher, not {subset!r}")
    study = cfg.split == "study"  # the study reads the training and validation files only
    if cfg.path is not None:
        paths = [_folder(cfg)]
    else:
        paths = hp.fetch_hub(subset) + ([] if study else hp.fetch_zenodo(subset))
    archives = hp.subset_archives(subset, paths)
    archives = {("test" if split == "semeval_test" else split): pair for split, pair in archives.items()
                if not (study and split == "test")}
    min_chars = 7000 if subset == "bypublisher" else 0
    files = [path for pair in archives.values() for path in pair.values()]
    where = cfg.path or f"{hp.REPO_ID}:{subset}"
    parts = tuple(Part(split, (), f"{where} ({pair['articles'].name})") for split, pair in archives.items())
    source = DocumentSource(cfg.dataset, parts, tuple(hp.LABEL_NAMES), fingerprint_files(files),
                            skip_bad=cfg.bad_rows == "skip")
    return Resolved(source, lambda folder: hp.convert_subset(archives, folder, min_chars, cfg.text_rule))


def _hub_parquet(cfg: DataConfig, repo_id: str, patterns: dict[str, str], label_names,
                 revision: str | None = None, text_rule: str | None = None) -> Resolved:
    """Fetch a hub dataset's Parquet files (cached by huggingface_hub)."""
    from huggingface_hub import snapshot_download  # imported late: only hub runs need it

    root = Path(snapshot_download(repo_id, repo_type="dataset", revision=revision,
                                  allow_patterns=list(patterns.values())))
    files = {split: sorted(root.glob(pattern)) for split, pattern in patterns.items()}
    for split, parts in files.items():
        if not parts:
            raise DataError(f"{repo_id}: no files match {patterns[split]}")
    return _files_source(cfg, files, {s: f"{repo_id}:{p}" for s, p in patterns.items()}, label_names, text_rule)


def load_generic(cfg: DataConfig) -> Resolved:
    """Any local labelled files (`dataset: local`)."""
    return local_source(cfg)


ADAPTERS: dict[str, Callable[[DataConfig], Resolved]] = {
    "imdb": load_imdb,
    "hyperpartisan": load_hyperpartisan,
    "arxiv": load_arxiv,
    "local": load_generic,
}
