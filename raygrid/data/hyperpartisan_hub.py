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

Text (`text_rule` "source") = the article's text content (`ET.tostring(article, method="text")`:
all text nodes in document order, tags dropped) passed through `clean_text`, which behaves like
`clean_txt` of allenai/longformer `scripts/hp_preprocess.py`. The result equals the rows of
`shared/data/hyperpartisan_*.parquet` (and Longformer's train/dev/test.jsonl). `text_rule` "study"
= the study's paragraph text (`study_text`), on which its 7,000-character filter was taken.
Parsed archives are written to Parquet batch by batch (`convert_subset`), so the 600k-article
by-publisher file is never held in memory; the split rules then read labels only.
"""
from __future__ import annotations

import contextlib
import re
import zipfile
from pathlib import Path
from typing import IO, Iterable, Iterator, Union
from xml.etree import ElementTree as ET

import pyarrow as pa
import pyarrow.parquet as pq

from raygrid.data.raw import DataError

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


def study_text(article: ET.Element) -> str:
    """The study's text of an `<article>`: its `<p>` children's own text, stripped, joined by single spaces.

    As the study's notebook (`convert_xml_to_csv_streamed`): only direct `<p>` children, and of
    each only `.text`, the text before its first inner tag (a paragraph that starts with a link
    contributes nothing); a paragraph whose `.text` is whitespace adds an empty piece. No cleaning.
    """
    return " ".join(child.text.strip() for child in article if _local_tag(child.tag) == "p" and child.text)


def _local_tag(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]  # the study drops any {namespace} prefix


TEXT_RULES = {"source": lambda article: clean_text(article_text(article)), "study": study_text}


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


def parse_articles(articles_xml: Source, ground_truth_xml: Source, min_chars: int = 0,
                   text_rule: str = "source") -> pa.Table:
    """Articles joined to their labels by id: table(text, label, id, title, url), in file order.

    `min_chars` keeps articles whose text has at least that many characters (the study's
    by-publisher set uses 7000). `text_rule`: source = Longformer's cleaning of the whole text;
    study = the study's paragraph text (`study_text`). Each XML argument is an .xml path, a .zip
    holding one .xml, or a binary file object.
    """
    return pa.Table.from_batches(list(iter_article_batches(articles_xml, ground_truth_xml, min_chars, text_rule)),
                                 schema=SCHEMA)


def write_articles(articles_xml: Source, ground_truth_xml: Source, target: Path, min_chars: int = 0,
                   text_rule: str = "source") -> int:
    """`parse_articles` streamed into a Parquet file batch by batch (bounded memory); returns the rows kept."""
    rows = 0
    with pq.ParquetWriter(target, SCHEMA) as writer:
        for batch in iter_article_batches(articles_xml, ground_truth_xml, min_chars, text_rule):
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows


def iter_article_batches(articles_xml: Source, ground_truth_xml: Source, min_chars: int = 0,
                         text_rule: str = "source") -> Iterator[pa.RecordBatch]:
    """The kept articles as record batches of up to 10,000 rows, in file order."""
    truth, to_text = read_ground_truth(ground_truth_xml), TEXT_RULES[text_rule]
    rows: dict[str, list] = {name: [] for name in SCHEMA.names}
    seen = 0
    for article in iter_articles(articles_xml):
        seen += 1
        article_id = article.get("id")
        if article_id not in truth:
            raise _error(f"{_source_name(articles_xml)}: article {article_id!r} has no entry in "
                         f"{_source_name(ground_truth_xml)}")
        text = to_text(article)
        if len(text) < min_chars:
            continue
        label, url = truth[article_id]
        for column, value in zip(SCHEMA.names, (text, label, article_id, article.get("title", ""), url)):
            rows[column].append(value)
        if len(rows["text"]) >= _BATCH_ROWS:
            yield pa.RecordBatch.from_pydict(rows, schema=SCHEMA)
            rows = {name: [] for name in SCHEMA.names}
    if rows["text"]:
        yield pa.RecordBatch.from_pydict(rows, schema=SCHEMA)
    if seen != len(truth):
        raise _error(f"{_source_name(articles_xml)}: {seen} articles but {len(truth)} ground-truth entries")


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
    return {split: parse_articles(pair["articles"], pair["ground_truth"], min_chars)
            for split, pair in subset_archives(subset, paths).items()}


def subset_archives(subset: str, paths: Iterable[str | Path]) -> dict[str, dict[str, Path]]:
    """Output split -> {"articles", "ground_truth"} files of `subset` found under `paths`; train is required."""
    paths = tuple(paths)
    archives = find_archives(*paths)
    part_split = BYARTICLE_PART_SPLIT if subset == "byarticle" else PART_SPLIT
    found = {split: pair for part, split in part_split.items() if (pair := archives.get((subset, part)))}
    if "train" not in found:
        raise _error(f"no articles-training-{subset}-*.xml/.zip (with its ground-truth) in "
                     f"{', '.join(map(str, paths))}")
    return found


def convert_subset(archives: dict[str, dict[str, Path]], folder: Path, min_chars: int,
                   text_rule: str = "source") -> dict[str, Path]:
    """Each split's archives (`subset_archives`) -> `<folder>/<split>.parquet`, streamed (one pass over the XML)."""
    out = {}
    for split, pair in archives.items():
        out[split] = folder / f"{split}.parquet"
        write_articles(pair["articles"], pair["ground_truth"], out[split], min_chars, text_rule)
    return out


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


__all__ = [
    "REPO_ID", "HUB_DATA_COMMIT", "HUB_FILES", "ZENODO_FILES", "LABEL_NAMES", "clean_text", "article_text",
    "study_text", "open_xml", "iter_articles", "read_ground_truth", "parse_articles", "write_articles",
    "iter_article_batches", "find_archives", "subset_archives", "convert_subset",
    "load_byarticle_from_xml", "load_bypublisher_from_xml", "fetch_hub", "fetch_zenodo", "load_hub",
]
