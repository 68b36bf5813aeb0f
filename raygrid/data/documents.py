"""Labelled documents as files, read in batches: a scan of labels first, then the texts streamed.

A `DocumentSource` names the files of each part a dataset ships (train / validation / test, in
order) and how to read them; raygrid.data.sources builds one per dataset. `scan` reads every row's
label and checks every row (empty text, missing label, label outside the label set: an error
naming file and row, or with `data.bad_rows: skip` the row is dropped and counted); a split policy
then routes rows by label alone (raygrid.data.splits), and `stream` reads the texts once more, in
batches, for the rows a split takes. Memory grows with the number of rows (a label each), never
with the text. `read_all` is the one-pass, in-memory reading that TF-IDF and `data stats` use.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raygrid.data.raw import DataError, RawSplits
from raygrid.data.splits import UNUSED, Routing

BATCH_ROWS = 256  # documents per batch handed on (to the tokenizer): bounded memory at any document length
READ_ROWS = 1024  # rows per batch read from a file, at most ...
READ_BYTES = 4 << 20  # ... and about this many bytes of (uncompressed) Parquet data: long documents, fewer rows
# Text preparations a source may apply to every text as it is read (data.text_rule: study).
TEXT_RULES: dict[str, Callable[[pa.Array], pa.Array]] = {
    # The study's IMDB notebook: df["text"].str.replace(r"<br\s*/?>", "", regex=True)
    "imdb-study": lambda text: pc.replace_substring_regex(text, pattern=r"<br\s*/?>", replacement=""),
}


@dataclass(frozen=True)
class Part:
    """One split as a dataset ships it: its files, read in order as one sequence of rows."""

    name: str  # train | validation | test
    files: tuple[str, ...]
    origin: str  # a file or a hub pattern, for messages


@dataclass(frozen=True)
class DocumentSource:
    """Where a labelled dataset's documents are and how to read them (picklable: Ray read tasks get it)."""

    dataset: str
    parts: tuple[Part, ...]
    label_names: tuple[str, ...] | None  # None: the sorted label values of train
    fingerprint: str  # content hash of the source files (the cache key's source part)
    text_column: str = "text"
    label_column: str = "label"
    text_rule: str | None = None  # a key of TEXT_RULES
    skip_bad: bool = False

    def part(self, name: str) -> Part:
        return next(part for part in self.parts if part.name == name)


@dataclass
class Scan:
    """Every part's labels (kept rows, file order), which file rows were kept, and how many were dropped."""

    labels: dict[str, np.ndarray]
    kept: dict[str, np.ndarray]  # part -> bool per file row
    label_names: list[str]
    skipped: dict[str, int] = field(default_factory=dict)


def scan(source: DocumentSource) -> Scan:
    """Read labels and check rows (texts are read, checked and dropped batch by batch)."""
    labels, kept = {}, {}
    for part in source.parts:
        pieces, masks = [], []
        for _, batch, bad in validated_batches(source, part):
            masks.append(~bad)
            pieces.append(pc.fill_null(batch.column(1), -1).to_numpy(zero_copy_only=False)[~bad])
        labels[part.name] = np.concatenate(pieces) if pieces else np.zeros(0, np.int64)
        kept[part.name] = np.concatenate(masks) if masks else np.zeros(0, bool)
    result = Scan(labels, kept, _label_names(source, labels))
    _check_label_range(source, result)
    result.skipped = {name: int((~mask).sum()) for name, mask in result.kept.items() if (~mask).any()}
    return result


def stream(source: DocumentSource, found: Scan, routing: Routing, batch_rows: int = BATCH_ROWS
           ) -> Iterator[pa.Table]:
    """table(text, label, split, text_hash) of the routed rows, in batches of `batch_rows`, parts in order."""
    pending: list[pa.Table] = []
    count = 0
    for part in source.parts:
        split_of_row = np.full(len(found.kept[part.name]), UNUSED, np.int8)
        split_of_row[found.kept[part.name]] = routing[part.name]  # kept rows -> their split
        for offset, batch, _ in validated_batches(source, part, check=False):
            ids = split_of_row[offset:offset + batch.num_rows]
            take = ids != UNUSED
            if not take.any():
                continue
            texts = batch.column(0).filter(pa.array(take))
            pending.append(pa.table({"text": texts, "label": batch.column(1).filter(pa.array(take)),
                                     "split": pa.array(ids[take], pa.int8()), "text_hash": text_hashes(texts)}))
            count += int(take.sum())
            while count >= batch_rows:
                table = pa.concat_tables(pending)
                yield table.slice(0, batch_rows)
                pending, count = [table.slice(batch_rows)], count - batch_rows
    if count:
        yield pa.concat_tables(pending)


def read_all(source: DocumentSource) -> RawSplits:
    """Every part as one in-memory table(text, label) of its good rows (one pass over the files)."""
    tables, labels, kept = {}, {}, {}
    for part in source.parts:
        batches, masks = [], []
        for _, batch, bad in validated_batches(source, part):
            masks.append(~bad)
            batches.append(pa.Table.from_batches([batch]).filter(pa.array(~bad)))
        empty = pa.table({"text": pa.array([], pa.string()), "label": pa.array([], pa.int64())})
        tables[part.name] = pa.concat_tables(batches) if batches else empty
        labels[part.name] = tables[part.name]["label"].to_numpy()
        kept[part.name] = np.concatenate(masks) if masks else np.zeros(0, bool)
    found = Scan(labels, kept, _label_names(source, labels))
    dropped = _check_label_range(source, found)
    for name, out_of_range in dropped.items():
        tables[name] = tables[name].filter(pa.array(~out_of_range))
    skipped = {name: int((~mask).sum()) for name, mask in found.kept.items() if (~mask).any()}
    return RawSplits(tables, found.label_names, {part.name: part.origin for part in source.parts},
                     fingerprint=source.fingerprint, skipped=skipped)


def validated_batches(source: DocumentSource, part: Part, check: bool = True
                      ) -> Iterator[tuple[int, pa.RecordBatch, np.ndarray]]:
    """(row offset in the part, batch(text, label), bad-row mask) over the part's files, text rule applied.

    With `check`, a bad row (empty or missing text, missing label) raises naming its file and row,
    unless the source skips bad rows; whole-file problems (missing column, wrong type) always raise.
    """
    offset = 0
    for path in part.files:
        file_row = 0
        for batch in read_batches(Path(path), (source.text_column, source.label_column)):
            batch = _typed(batch, path, source)
            empty, missing = _bad_rows(batch)
            if check and not source.skip_bad:
                _refuse(path, file_row, empty, missing)
            yield offset, batch, empty | missing
            offset, file_row = offset + batch.num_rows, file_row + batch.num_rows


def read_batches(path: Path, columns: tuple[str, ...] | None = None) -> Iterator[pa.RecordBatch]:
    """Record batches of a Parquet/CSV/JSONL file (only `columns`, in that order), read as they are needed."""
    if path.suffix not in (".parquet", ".csv", ".jsonl", ".json"):
        raise DataError(f"{path}: unsupported file type (use .parquet, .csv, .jsonl, .json)")
    try:
        for batch in _file_batches(path):
            if columns is not None:
                missing = [c for c in columns if c not in batch.schema.names]
                if missing:
                    raise DataError(f"{path}: missing column {missing[0]!r} (has {', '.join(batch.schema.names)})")
                batch = batch.select(list(columns))
            yield batch
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"{path}: unreadable ({str(err).splitlines()[0]})") from None


def _file_batches(path: Path) -> Iterator[pa.RecordBatch]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path, pre_buffer=False)  # pre-buffering keeps every row group read so far
        meta = parquet.metadata
        row_bytes = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)) / max(meta.num_rows, 1)
        yield from parquet.iter_batches(batch_size=int(min(READ_ROWS, max(16, READ_BYTES // max(row_bytes, 1)))))
    elif path.suffix == ".csv":
        import pyarrow.csv as pcsv

        yield from pcsv.open_csv(path)
    else:
        import pyarrow.json as pjson

        yield from pjson.open_json(path)


def check_classes_of(labels: np.ndarray, where: str, column: str) -> None:
    """A training split with fewer than two classes cannot train a classifier, yet would score a "perfect" F1."""
    classes = np.unique(labels).tolist()
    if len(classes) < 2:
        raise DataError(f"{where}: column {column!r}: the training split holds {len(classes)} class(es) "
                        f"{classes[:2]}; a classifier needs at least two")


def fingerprint_files(paths) -> str:
    """Content hash of files (names included), streamed."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        digest.update(path.name.encode())
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def _typed(batch: pa.RecordBatch, path: str, source: DocumentSource) -> pa.RecordBatch:
    text, label = batch.column(0), batch.column(1)
    if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type) or pa.types.is_null(text.type)):
        raise DataError(f"{path}: column {source.text_column!r} must hold text, not {text.type}")
    if not (pa.types.is_integer(label.type) or pa.types.is_null(label.type)):
        raise DataError(f"{path}: column {source.label_column!r} must hold integer class ids, not {label.type}")
    text = text.cast(pa.string())
    if source.text_rule is not None:
        text = TEXT_RULES[source.text_rule](text)
    return pa.RecordBatch.from_arrays([text, label.cast(pa.int64())], names=["text", "label"])


def _bad_rows(batch: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
    """(rows with empty or missing text, rows with a missing label)."""
    text, label = batch.column(0), batch.column(1)
    empty = pc.fill_null(pc.or_(pc.is_null(text), pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0)), True)
    return empty.to_numpy(zero_copy_only=False), pc.is_null(label).to_numpy(zero_copy_only=False)


def _refuse(path: str, first_row: int, empty: np.ndarray, missing: np.ndarray) -> None:
    if empty.any():
        raise DataError(f"{path}: row {first_row + int(np.flatnonzero(empty)[0])}: empty or missing text "
                        f"({int(empty.sum())} such rows in this batch; data.bad_rows: skip drops them)")
    if missing.any():
        raise DataError(f"{path}: row {first_row + int(np.flatnonzero(missing)[0])}: missing label "
                        f"(data.bad_rows: skip drops such rows)")


def _label_names(source: DocumentSource, labels: dict[str, np.ndarray]) -> list[str]:
    if source.label_names is not None:
        return list(source.label_names)
    return [str(v) for v in np.unique(labels.get("train", np.zeros(0, np.int64)))]


def _check_label_range(source: DocumentSource, found: Scan) -> dict[str, np.ndarray]:
    """Labels must be 0..len(label_names)-1: raise naming the first bad row, or (skip) drop them.

    Returns part -> mask over its kept rows of those dropped (updating `found` in place).
    """
    train = source.parts[0] if source.parts else None
    if train is not None and train.name == "train":  # before label ids: a one-class train is the clearer error
        check_classes_of(found.labels["train"], train.origin, source.label_column)
    dropped = {}
    for part in source.parts:
        values = found.labels[part.name]
        outside = (values < 0) | (values >= len(found.label_names))
        if not outside.any():
            continue
        if not source.skip_bad:
            row = int(np.flatnonzero(found.kept[part.name])[np.flatnonzero(outside)[0]])
            raise DataError(f"{part.origin}: row {row}: label {values[outside][0]} is not one of "
                            f"0..{len(found.label_names) - 1} ({', '.join(found.label_names)})")
        kept_rows = np.flatnonzero(found.kept[part.name])
        found.kept[part.name][kept_rows[outside]] = False
        found.labels[part.name] = values[~outside]
        dropped[part.name] = outside
    return dropped


def text_hashes(texts: pa.Array) -> pa.Array:
    """64-bit content hash of each text (duplicate counting across splits without keeping the texts)."""
    values = [int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little") for t in texts.to_pylist()]
    return pa.array(values, pa.uint64())


def with_parts(source: DocumentSource, files: dict[str, Path]) -> DocumentSource:
    """The same source read from other files (e.g. XML archives converted to Parquet), part by part."""
    parts = tuple(replace(part, files=(str(files[part.name]),)) for part in source.parts if part.name in files)
    return replace(source, parts=parts)
