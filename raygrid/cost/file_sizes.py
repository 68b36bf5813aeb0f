"""Document lengths in characters from local files, for `raygrid plan` (raygrid.cost.sizes turns them into tokens).

Reads only the text column, memoised per file and modification time; a corpus is read file by file
only until `limit.train` documents are kept, with the reader's own rules (empty documents skipped,
WikiText lines rejoined into articles, the study's keyword selection and 600-word cut).
"""
from __future__ import annotations

import functools
from pathlib import Path

from raygrid.spec.config import DataConfig
from raygrid.spec.paths import resolve_location


class CostUnknown(ValueError):
    """The cost of a cell cannot be predicted; the message says why (`raygrid plan` shows "?")."""


def split_chars(data: DataConfig) -> dict:
    """Characters of each document of each shipped split's local file."""
    return {split: _char_lengths(str(f), data.text_column, f.stat().st_mtime) for split, f in _local_files(data).items()}


def corpus_chars(data: DataConfig):
    """Characters of the corpus documents the reader keeps, in file order: empty ones and (corpus_rule:
    study) unselected ones skipped, selected ones cut to 600 words; the first limit.train; files read
    only until then."""
    import numpy as np

    from raygrid.data.corpus import local_files

    kept, count = [], 0
    for f in local_files(data.path):
        chars = _char_lengths(str(f), data.text_column, f.stat().st_mtime, data.dataset == "wikitext", data.corpus_rule)
        chars = chars[chars > 0]
        kept.append(chars)
        count += len(chars)
        if data.limit.train is not None and count >= data.limit.train:
            break
    return np.concatenate(kept)[:data.limit.train] if kept else np.zeros(0)


def _local_files(data: DataConfig) -> dict[str, Path]:
    """The files the dataset adapter would read for data.path (see raygrid.data.sources)."""
    from raygrid.data.sources import find_file, find_split_file

    folder = Path(resolve_location(data.path)).expanduser()
    if data.dataset == "hyperpartisan" and data.subset == "byarticle_semeval":
        files = {"train": find_file(folder, "hyperpartisan_byarticle_all"),
                 "test": find_file(folder, "hyperpartisan_semeval_test")}
        if None in files.values():  # the loader needs both
            raise CostUnknown(f"data.path: {folder} lacks hyperpartisan_byarticle_all.* "
                              f"or hyperpartisan_semeval_test.*")
    else:
        prefix = None if data.dataset == "local" else data.dataset
        files = {split: find_split_file(folder, split, prefix) for split in ("train", "validation", "test")}
    if files.get("train") is None:
        raise CostUnknown(f"data.path: no train file for {data.dataset} in {folder}")
    return {split: f for split, f in files.items() if f is not None}


@functools.lru_cache(maxsize=64)
def _char_lengths(path: str, column: str, mtime: float, wikitext: bool = False, rule: str = "none"):
    """Characters per document of one file's text column (nulls count 0); mtime keys the memo.

    wikitext: rows are lines, rejoined into articles at ` = Title = ` lines (as raygrid.data.corpus).
    rule "study": 0 for articles the study's keyword rule drops, else the characters of the first 600 words.
    """
    import numpy as np
    import pyarrow.compute as pc

    if path.endswith(".parquet"):  # the text column only; checked on the schema (Arrow's error names no file)
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
        table = pq.read_table(path, columns=[column] if column in names else [])
    else:
        from raygrid.data.sources import read_table

        table = read_table(Path(path))
        names = table.column_names
    if column not in names:
        raise CostUnknown(f"{path}: no column {column!r} (data.text_column; the file has {', '.join(names)})")
    text = pc.fill_null(table[column], "")
    if rule == "study":
        from raygrid.data.corpus import first_words, study_selects

        return np.array([len(first_words(t)) if study_selects(t) else 0 for t in text.to_pylist()], float)
    chars = pc.utf8_length(text).to_numpy().astype(float)
    if wikitext:
        title = pc.and_(pc.match_substring_regex(text, r"^\s*= [^=]"), pc.match_substring_regex(text, r" =\s*$"))
        chars = np.bincount(np.cumsum(title.to_numpy(zero_copy_only=False)), weights=chars)
    return chars
