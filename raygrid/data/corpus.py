"""Unlabelled corpora for MLM: shards read in order, one at a time, and the study's Wikipedia selection.

A `CorpusSource` lists a corpus' Parquet shards: local files (a folder, a glob, a file) or the
files of a hub dataset (`wikimedia/wikipedia` `20231101.en`), which are downloaded one by one only
when reading reaches them (`hf_hub_download`), so a corpus that is complete after a few shards
never fetches the rest. Both go through `rows`, which counts what it reads.

The study's rule (`data.corpus_rule: study`, from its `wikipedia_tokenization.ipynb`): keep an
article when its lower-cased text holds at least 3 distinct words (regex `[a-z]+`) of
STUDY_KEYWORDS, cut it to its first 600 whitespace-separated words, stop at `limit.train` kept.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pyarrow.parquet as pq

from raygrid.spec.paths import resolve_location

# HF hub sources (the real default; CI and tests use local copies laid out the same way).
HUB_SOURCES = {
    "wikipedia": ("wikimedia/wikipedia", "20231101.en/*.parquet"),
    "wikitext": ("Salesforce/wikitext", "wikitext-103-raw-v1/train-*.parquet"),
}
READ_ROWS = 256  # rows decoded per Parquet read

# The study's list (its notebook's `keywords`, in its order); phrases such as "box office" are two words.
STUDY_KEYWORDS = frozenset(
    "film movie cinema television series episode season actor actress director screenwriter producer "
    "soundtrack box office award academy oscar review reception critics plot culture algorithm theorem proof "
    "model dataset data method approach analysis experiment simulation complexity optimization neural network "
    "machine learning statistics statistical physics quantum entropy differential equation mathematics computer "
    "engineering artificial intelligence algorithmic election politics political party ideology government "
    "policy law immigration climate abortion gun control foreign propaganda media bias populism nationalism "
    "controversy criticism debate movement public opinion".split())
STUDY_MIN_KEYWORDS = 3
STUDY_WORDS = 600
_WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class CorpusSource:
    """A corpus' shards in reading order; `repo_id` set = hub files fetched when first read."""

    name: str
    shards: tuple[str, ...]  # local paths, or file names in the hub repo
    fingerprint: str
    column: str = "text"
    repo_id: str | None = None
    revision: str | None = None

    def shard_path(self, index: int) -> Path:
        if self.repo_id is None:
            return Path(self.shards[index])
        from huggingface_hub import hf_hub_download  # late: only hub runs need it

        return Path(hf_hub_download(self.repo_id, self.shards[index], repo_type="dataset", revision=self.revision))

    @property
    def origin(self) -> str:
        where = f"{self.repo_id}@{self.revision}:" if self.repo_id else ""
        return where + ", ".join(self.shards[:3]) + (" ..." if len(self.shards) > 3 else "")


def local_corpus(name: str, path: str, column: str = "text") -> CorpusSource:
    """Parquet files of a folder (sorted: a stable document order), a glob like `dir/wiki_*.parquet`, or a file."""
    files = local_files(path)
    fingerprint = hashlib.sha256(json.dumps([(f.name, f.stat().st_size) for f in files]).encode()).hexdigest()[:16]
    return CorpusSource(name, tuple(str(f) for f in files), fingerprint, column)


def hub_corpus(name: str, column: str = "text") -> CorpusSource:
    """The hub corpus' shard names at its current revision (listed, not downloaded)."""
    from huggingface_hub import HfApi  # late: only hub runs need it

    repo_id, pattern = HUB_SOURCES[name]
    api = HfApi()
    revision = api.dataset_info(repo_id).sha
    folder = pattern.rsplit("/", 1)[0]
    names = sorted(entry.path for entry in api.list_repo_tree(repo_id, folder, repo_type="dataset", revision=revision)
                   if fnmatch.fnmatch(entry.path, pattern))
    if not names:
        raise FileNotFoundError(f"{repo_id}@{revision}: no files match {pattern}")
    fingerprint = hashlib.sha256(f"{repo_id}@{revision}:{pattern}".encode()).hexdigest()[:16]
    return CorpusSource(name, tuple(names), fingerprint, column, repo_id, revision)


def local_files(path: str, pattern: str = "*.parquet") -> list[Path]:
    """Parquet files of a folder (sorted), a glob like `dir/wiki_*.parquet`, or one file."""
    location = Path(resolve_location(path)).expanduser()
    if "*" in location.name:
        location, pattern = location.parent, location.name
    files = sorted(location.glob(pattern)) if location.is_dir() else [location]
    if not files or not all(f.is_file() for f in files):
        raise FileNotFoundError(f"data.path: no Parquet files matching {pattern} at {location}")
    return files


def rows(source: CorpusSource) -> Iterator[tuple[int, str | None]]:
    """(shard index, text) of every row, shard after shard; a shard is opened only when reached."""
    for index in range(len(source.shards)):
        parquet = pq.ParquetFile(source.shard_path(index), pre_buffer=False)  # else it keeps what it read
        if source.column not in parquet.schema_arrow.names:
            raise ValueError(f"{source.shards[index]}: no column {source.column!r} (data.text_column)")
        for batch in parquet.iter_batches(columns=[source.column], batch_size=READ_ROWS):
            for text in batch.column(0).to_pylist():
                yield index, text


def study_selects(text: str) -> bool:
    """At least STUDY_MIN_KEYWORDS distinct keywords among the lower-cased text's `[a-z]+` words."""
    return len(STUDY_KEYWORDS.intersection(_WORD.findall(text.lower()))) >= STUDY_MIN_KEYWORDS


def first_words(text: str, count: int = STUDY_WORDS) -> str:
    """The first `count` whitespace-separated words, joined by single spaces (the study's `shorten_texts`)."""
    return " ".join(text.split()[:count])


def wikitext_articles(lines) -> Iterator[tuple[int, str]]:
    """WikiText rows are lines; rejoin them into articles, which start at a ` = Title = ` line.

    Takes and yields (position, text): an article's position is that of its last line. Section
    headings (` = = Section = = `) stay inside their article.
    """
    article: list[str] = []
    last = -1
    for position, line in lines:
        line = line or ""
        stripped = line.strip()
        if stripped.startswith("= ") and stripped.endswith(" =") and not stripped.startswith("= ="):
            if article:
                yield last, "".join(article)
            article = []
        article.append(line if line.endswith("\n") else line + "\n")
        last = position
    if article:
        yield last, "".join(article)
