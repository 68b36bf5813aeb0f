"""Hyperpartisan News Detection (SemEval-2019 Task 4) from its original XML archives.

The HF repo `SemEvalWorkshop/hyperpartisan_news_detection` is script-based: its loading script reads
XML files, so there is no Parquet to fetch. Since the "Host data files (#5)" commit
(`c315cc4a12a27cde08fd55c0beda41ced8b75923`) the repo itself hosts six of the original Zenodo zips
under `data/` (see `HUB_FILES`):

- by-article training (645 articles) and its ground truth,
- by-publisher training (600k) and validation (150k) with their ground truth.

The test sets are *not* on the hub. The official by-article test set (628 articles, released after
the task) and the by-publisher test set are only on Zenodo (record 5776081, `ZENODO_FILES`); pass
local copies, or opt in to `fetch_zenodo`.

Every archive holds one XML file. Articles look like
`<article id="0000001" published-at="..." title="...">body with <p>, <a>, <q> tags</article>` and
the ground truth like `<article id="0000001" hyperpartisan="true" url="..." labeled-by="article"/>`.
Both are read with `iterparse` and each article is dropped once converted, so the 600k by-publisher
archive streams (straight out of the zip) instead of loading at once.

Text = the article's text content (`ET.tostring(article, method="text")`: all text nodes in
document order, tags dropped) passed through `clean_text`, which behaves like `clean_txt` of
allenai/longformer `scripts/hp_preprocess.py`. The result equals the rows of
`shared/data/hyperpartisan_*.parquet` (and Longformer's train/dev/test.jsonl).
"""
from __future__ import annotations

import contextlib
import json
import re
import zipfile
from pathlib import Path
from typing import IO, Iterable, Iterator, Mapping, Union
from xml.etree import ElementTree as ET

import numpy as np
import pyarrow as pa

from raygrid.data.raw import DataError
from raygrid.data.splits import stratified_split

REPO_ID = "SemEvalWorkshop/hyperpartisan_news_detection"
# Commit of the hub repo that added the data files (the loading script reads them from `data/`).
HUB_DATA_COMMIT = "c315cc4a12a27cde08fd55c0beda41ced8b75923"
HUB_FILES = {
    ("byarticle", "training"): ("data/articles-training-byarticle-20181122.zip",
                                "data/ground-truth-training-byarticle-20181122.zip"),
    ("bypublisher", "training"): ("data/articles-training-bypublisher-20181122.zip",
                                  "data/ground-truth-training-bypublisher-20181122.zip"),
    ("bypublisher", "validation"): ("data/articles-validation-bypublisher-20181122.zip",
                                    "data/ground-truth-validation-bypublisher-20181122.zip"),
}
ZENODO_URL = "https://zenodo.org/records/5776081/files/{name}?download=1"
ZENODO_FILES = {
    ("byarticle", "test"): ("articles-test-byarticle-20181207.zip", "ground-truth-test-byarticle-20181207.zip"),
    ("bypublisher", "test"): ("articles-test-bypublisher-20181212.zip",
                              "ground-truth-test-bypublisher-20181212.zip"),
}
LABEL_NAMES = ["false", "true"]  # ground truth hyperpartisan="false" -> 0, "true" -> 1
SCHEMA = pa.schema([("text", pa.string()), ("label", pa.int64()), ("id", pa.string()),
                    ("title", pa.string()), ("url", pa.string())])
# Output split names of each archive part (raygrid names; the official by-article test is kept apart).
PART_SPLIT = {"training": "train", "validation": "validation", "test": "test"}
BYARTICLE_PART_SPLIT = {"training": "train", "test": "semeval_test"}

Source = Union[str, Path, IO[bytes]]
_ARCHIVE_NAME = re.compile(
    r"^(?P<kind>articles|ground-truth)-(?P<part>training|validation|test)-(?P<subset>byarticle|bypublisher)"
    r"-(?P<date>\d{8})\.(?P<ext>xml|zip)$")
_BATCH_ROWS = 10_000


def _error(message: str) -> ValueError:
    return DataError(message)


# --- text cleaning ------------------------------------------------------------------------------

_LETTERS_SLASH_LETTERS = re.compile(r"[a-zA-Z]+/[a-zA-Z]+")
# Applied one after the other (not as one alternation): "wwwhttp:x" keeps "www" this way.
_URL_LIKE = tuple(re.compile(p + r"\S+") for p in ("http", "www", "href"))
_WHITESPACE_RUN = re.compile(r"\s+")
_PUNCT_RUN = re.compile(r"[!?.]{2,}")
# A word ending in one character repeated 3+ times ("sooooo", "600,000" -> "so", "600,0"); DOTALL so
# `.` may also be a space, as in the original.
_CHAR_RUN = re.compile(r"\b(\S*?)(.)\2{2,}\b", re.DOTALL)


def clean_text(text: str) -> str:
    """Longformer's Hyperpartisan cleaning (`clean_txt` in scripts/hp_preprocess.py), step by step.

    1. "letters/letters" -> " " (drops e.g. "Sullivan/Getty" and "and/or");
    2. newlines -> spaces, literal "&#160;" removed;
    3. tokens starting with "http", "www" or "href" removed, in that order;
    4. whitespace runs -> one space;
    5. runs of "!?." -> their last character; a word's trailing run of 3+ equal characters -> one;
    6. strip.
    """
    text = _LETTERS_SLASH_LETTERS.sub(" ", text)
    text = text.replace("\n", " ").replace("&#160;", "")
    for pattern in _URL_LIKE:
        text = pattern.sub("", text)
    text = _WHITESPACE_RUN.sub(" ", text)
    text = _PUNCT_RUN.sub(lambda m: m.group()[-1], text)
    text = _CHAR_RUN.sub(r"\1\2", text)
    return text.strip()


def article_text(article: ET.Element) -> str:
    """Raw text of an `<article>` element: every text node in document order, tags dropped.

    Same as `ET.tostring(article, method="text")` without the element's tail (whitespace between
    articles, which cleaning strips anyway).
    """
    return "".join(article.itertext())


# --- streaming XML ------------------------------------------------------------------------------

@contextlib.contextmanager
def open_xml(source: Source) -> Iterator[IO[bytes]]:
    """Binary handle on an XML file, on the single XML inside a zip, or on an open file object."""
    if hasattr(source, "read"):
        yield source  # caller owns it
        return
    path = Path(source)
    if not path.is_file():
        raise _error(f"{path}: no such file")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.namelist() if m.lower().endswith(".xml") and not m.startswith("__MACOSX")]
            if len(members) != 1:
                raise _error(f"{path}: expected one .xml file in the zip, found {members or 'none'}")
            with archive.open(members[0]) as fh:
                yield fh
    else:
        with open(path, "rb") as fh:
            yield fh


def _source_name(source: Source) -> str:
    return str(getattr(source, "name", source))


def iter_articles(source: Source) -> Iterator[ET.Element]:
    """Yield each top-level `<article>` element, complete, then free it (constant memory)."""
    with open_xml(source) as fh:
        root, depth = None, 0
        try:
            for event, elem in ET.iterparse(fh, events=("start", "end")):
                if event == "start":
                    root = elem if root is None else root
                    depth += 1
                    continue
                depth -= 1
                if depth == 1 and elem.tag == "article":
                    yield elem
                    root.clear()  # drop the articles seen so far
        except ET.ParseError as err:
            raise _error(f"{_source_name(source)}: invalid XML ({err})") from None


def read_ground_truth(source: Source) -> dict[str, tuple[int, str]]:
    """Article id -> (label, url) from a ground-truth XML (label 1 = hyperpartisan="true")."""
    truth: dict[str, tuple[int, str]] = {}
    for elem in iter_articles(source):
        article_id, value = elem.get("id"), elem.get("hyperpartisan")
        if article_id is None or value not in ("true", "false"):
            raise _error(f"{_source_name(source)}: article {article_id!r}: hyperpartisan={value!r} "
                         "(expected an id and \"true\" or \"false\")")
        truth[article_id] = (int(value == "true"), elem.get("url", ""))
    return truth


def parse_articles(articles_xml: Source, ground_truth_xml: Source, min_chars: int = 0) -> pa.Table:
    """Articles joined to their labels by id: table(text, label, id, title, url), in file order.

    `min_chars` keeps articles whose cleaned text has at least that many characters (the study's
    by-publisher set uses 7000). Each argument is an .xml path, a .zip holding one .xml, or a
    binary file object.
    """
    truth = read_ground_truth(ground_truth_xml)
    batches, rows = [], {name: [] for name in SCHEMA.names}

    def flush():
        if rows["text"]:
            batches.append(pa.RecordBatch.from_pydict(rows, schema=SCHEMA))
            for column in rows.values():
                column.clear()

    seen = 0
    for article in iter_articles(articles_xml):
        seen += 1
        article_id = article.get("id")
        if article_id not in truth:
            raise _error(f"{_source_name(articles_xml)}: article {article_id!r} has no entry in "
                         f"{_source_name(ground_truth_xml)}")
        text = clean_text(article_text(article))
        if len(text) < min_chars:
            continue
        label, url = truth[article_id]
        for column, value in zip(SCHEMA.names, (text, label, article_id, article.get("title", ""), url)):
            rows[column].append(value)
        if len(rows["text"]) >= _BATCH_ROWS:
            flush()
    flush()
    if seen != len(truth):
        raise _error(f"{_source_name(articles_xml)}: {seen} articles but {len(truth)} ground-truth entries")
    return pa.Table.from_batches(batches, schema=SCHEMA)


# --- local archives -----------------------------------------------------------------------------

def find_archives(*paths: str | Path) -> dict[tuple[str, str], dict[str, Path]]:
    """(subset, part) -> {"articles": path, "ground_truth": path} for the original file names.

    `paths` are folders (searched recursively) or files named like the Zenodo/hub originals,
    e.g. `articles-training-byarticle-20181122.zip` or the extracted `.xml`. When both the zip
    and the XML are present, the XML wins.
    """
    found: dict[tuple[str, str], dict[str, Path]] = {}
    for given in paths:
        given = Path(given).expanduser()
        if not given.exists():
            raise _error(f"{given}: no such file or folder")
        candidates = sorted(given.rglob("*")) if given.is_dir() else [given]
        for path in candidates:
            match = _ARCHIVE_NAME.match(path.name)
            if match is None:
                continue
            role = "articles" if match["kind"] == "articles" else "ground_truth"
            slot = found.setdefault((match["subset"], match["part"]), {})
            if role not in slot or slot[role].suffix == ".zip":
                slot[role] = path
    for (subset, part), slot in found.items():
        if len(slot) != 2:
            missing = {"articles", "ground_truth"} - set(slot)
            raise _error(f"hyperpartisan {subset} {part}: found {', '.join(str(p) for p in slot.values())} "
                         f"but no {missing.pop().replace('_', '-')} file beside it")
    return found


def load_byarticle_from_xml(*paths: str | Path, min_chars: int = 0) -> dict[str, pa.Table]:
    """{"train": 645 articles, "semeval_test": 628 articles} from local zips or XML files.

    `semeval_test` (the official by-article test set) is present only when its files are given.
    """
    return _load_subset("byarticle", paths, min_chars)


def load_bypublisher_from_xml(*paths: str | Path, min_chars: int = 7000) -> dict[str, pa.Table]:
    """{"train", "validation"(, "test")} by-publisher tables, keeping articles >= `min_chars`.

    The default is the study's 7,000-character filter on the cleaned text.
    """
    return _load_subset("bypublisher", paths, min_chars)


def _load_subset(subset: str, paths: tuple[str | Path, ...], min_chars: int) -> dict[str, pa.Table]:
    """Parse every part of `subset` found under `paths` into its output split; train is required."""
    archives = find_archives(*paths)
    part_split = BYARTICLE_PART_SPLIT if subset == "byarticle" else PART_SPLIT
    tables = {split: parse_articles(pair["articles"], pair["ground_truth"], min_chars)
              for part, split in part_split.items() if (pair := archives.get((subset, part)))}
    if "train" not in tables:
        raise _error(f"no articles-training-{subset}-*.xml/.zip (with its ground-truth) in "
                     f"{', '.join(map(str, paths))}")
    return tables


# --- hub / Zenodo downloads (network; not exercised by the tests) -------------------------------

def fetch_hub(subset: str = "byarticle", *, repo_id: str = REPO_ID, revision: str | None = None,
              cache_dir: str | Path | None = None) -> list[Path]:
    """Download the subset's zips hosted on the hub (cached by huggingface_hub); return their paths.

    byarticle: the 645-article training set; bypublisher: training + validation (~1.3 GB).
    `revision` may pin `HUB_DATA_COMMIT`. The test sets are not on the hub: see `fetch_zenodo`.
    """
    from huggingface_hub import hf_hub_download  # late: only hub runs need it

    names = [name for (sub, _), pair in HUB_FILES.items() if sub == subset for name in pair]
    if not names:
        raise _error(f"hyperpartisan: unknown subset {subset!r} (byarticle or bypublisher)")
    return [Path(hf_hub_download(repo_id, name, repo_type="dataset", revision=revision, cache_dir=cache_dir))
            for name in names]


def fetch_zenodo(subset: str = "byarticle", *, cache_dir: str | Path | None = None, timeout: float = 60) -> list[Path]:
    """Download the subset's official test zips from Zenodo record 5776081 into `cache_dir`.

    The hub repo does not host them. Files already in `cache_dir` are reused.
    """
    import urllib.request

    if (subset, "test") not in ZENODO_FILES:
        raise _error(f"hyperpartisan: unknown subset {subset!r} (byarticle or bypublisher)")
    folder = Path(cache_dir or Path.home() / ".cache" / "raygrid" / "hyperpartisan-zenodo").expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in ZENODO_FILES[(subset, "test")]:
        target = folder / name
        if not target.is_file():
            partial = target.with_suffix(".part")
            with urllib.request.urlopen(ZENODO_URL.format(name=name), timeout=timeout) as response, \
                    open(partial, "wb") as out:
                while block := response.read(1 << 20):
                    out.write(block)
            if not zipfile.is_zipfile(partial):
                partial.unlink()
                raise _error(f"{ZENODO_URL.format(name=name)}: the download is not a zip archive")
            partial.rename(target)
        paths.append(target)
    return paths


def load_hub(subset: str = "byarticle", *, test_paths: Iterable[str | Path] = (), zenodo_test: bool = False,
             min_chars: int | None = None, revision: str | None = None,
             cache_dir: str | Path | None = None) -> dict[str, pa.Table]:
    """Fetch from the hub and parse. byarticle -> {"train"(, "semeval_test")};
    bypublisher -> {"train", "validation"(, "test")} filtered at `min_chars` (default 7000).

    The test split comes from `test_paths` (local zips/XML) or, with `zenodo_test`, from Zenodo.
    """
    paths = list(fetch_hub(subset, revision=revision, cache_dir=cache_dir)) + [Path(p) for p in test_paths]
    if zenodo_test:
        paths += fetch_zenodo(subset)
    load = load_byarticle_from_xml if subset == "byarticle" else load_bypublisher_from_xml
    return load(*paths) if min_chars is None else load(*paths, min_chars=min_chars)


# --- splits -------------------------------------------------------------------------------------

def _int_id(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _error(f"hyperpartisan: article id {value!r} is not a number") from None


def _ids_of(split) -> list[int]:
    if isinstance(split, (pa.Table, pa.RecordBatch)):
        if "id" not in split.column_names:
            raise _error("hyperpartisan: table has no 'id' column")
        split = split["id"].to_pylist()
    return [_int_id(v) for v in split]


def longformer_split(table: pa.Table, split_json: str | Path | Mapping[str, Iterable]) -> dict[str, pa.Table]:
    """Longformer's train/dev/test (scripts/hp-splits.json: lists of integer ids) -> train/validation/test.

    Rows follow the order of the id lists. Reproduced verbatim, leaks included: see `split_overlaps`.
    `split_json` is the file's path or its parsed dict.
    """
    if not isinstance(split_json, Mapping):
        split_json = json.loads(Path(split_json).read_text())
    names = {"train": "train", "dev": "validation", "validation": "validation", "test": "test"}
    unknown = set(split_json) - set(names)
    if unknown:
        raise _error(f"hyperpartisan split file: unknown keys {sorted(unknown)} (expected train/dev/test)")
    row_of = {article_id: row for row, article_id in enumerate(_ids_of(table))}
    splits = {}
    for key, ids in split_json.items():
        ids = [_int_id(i) for i in ids]
        missing = [i for i in ids if i not in row_of]
        if missing:
            raise _error(f"hyperpartisan split {key!r}: {len(missing)} ids not in the table, e.g. {missing[:5]}")
        splits[names[key]] = table.take(pa.array([row_of[i] for i in ids], pa.int64()))
    return {name: splits[name] for name in ("train", "validation", "test") if name in splits}


def split_overlaps(splits: Mapping[str, object]) -> dict[str, list[int]]:
    """Ids shared by each pair of splits: {"a&b": sorted ids}, names in alphabetical order.

    Values are tables with an `id` column or lists of ids. On Longformer's split this gives
    51 ids in "test&train" and 7 in "test&validation" (named "dev&test" when the keys are train/dev/test).
    """
    ids = {name: set(_ids_of(value)) for name, value in splits.items()}
    names = sorted(ids)
    return {f"{a}&{b}": sorted(ids[a] & ids[b]) for i, a in enumerate(names) for b in names[i + 1:]}


def ids_in_no_split(table: pa.Table, splits: Mapping[str, object]) -> list[int]:
    """Ids of `table` that no split uses (58 for Longformer's split of the 645 articles)."""
    used = set().union(*(_ids_of(value) for value in splits.values()))
    return sorted(set(_ids_of(table)) - used)


def leak_free_split(table: pa.Table, seed: int = 0) -> dict[str, pa.Table]:
    """Stratified 80/10/10 train/validation/test over unique article ids, seeded.

    Duplicate ids (e.g. Longformer's splits concatenated) are kept once, first occurrence. Uses
    the same stratified splitter, in the same order, as the `study` split policy; on the 645
    articles it gives 516/65/64.
    """
    ids = _ids_of(table)
    first = sorted({article_id: row for row, article_id in reversed(list(enumerate(ids)))}.values())
    unique = table.take(pa.array(first, pa.int64())) if len(first) < len(ids) else table
    rng = np.random.default_rng(seed)
    train, rest = stratified_split(unique, 0.2, rng)
    validation, test = stratified_split(rest, 0.5, rng)
    return {"train": train, "validation": validation, "test": test}


__all__ = [
    "REPO_ID", "HUB_DATA_COMMIT", "HUB_FILES", "ZENODO_FILES", "LABEL_NAMES", "clean_text", "article_text",
    "open_xml", "iter_articles", "read_ground_truth", "parse_articles", "find_archives",
    "load_byarticle_from_xml", "load_bypublisher_from_xml", "fetch_hub", "fetch_zenodo", "load_hub",
    "longformer_split", "split_overlaps", "ids_in_no_split", "leak_free_split",
]
