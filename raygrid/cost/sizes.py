"""How many documents and tokens a cell's data has: cache, local files, or a catalogue of the hub datasets.

Tokens per document: (a) exact from a tokenized cache entry of the same data config and tokenizer;
(b) from local files: characters / CHARS_PER_TOKEN (+2 special tokens), capped at data.max_len;
(c) hub sources: CATALOGUE (documents per split, mean length; lengths taken as lognormal and
capped analytically). MLM concatenates documents and cuts blocks of max_len (every block full).
Then the split policy, val_fraction and data.limit as the data pipeline applies them. raygrid.cost.estimate
turns these sizes into FLOPs and GPU-hours.
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path

from raygrid.spec.config import CORPORA, CellConfig, DataConfig
from raygrid.spec.paths import resolve_location

# Characters per bert-base-uncased WordPiece token, measured on shared/data: IMDB 4.25, Hyperpartisan
# 4.62, enwiki 4.65, WikiText 4.71. 4.2 slightly over-counts news and Wikipedia (a safe side).
CHARS_PER_TOKEN = 4.2
SPECIAL_TOKENS = 2  # [CLS] ... [SEP] around each fine-tuning document

# (dataset, subset) -> (documents per split as the adapter delivers them, mean tokens per document
# before truncation, σ of log length). IMDB, Hyperpartisan byarticle: measured on shared/data with
# the bert-base-uncased vocabulary. Hub byarticle = 645 training articles + the official 628-article
# test (the Longformer 516/64/65 split exists only as local files). bypublisher: the official
# 600k training / 150k validation / 4k test articles after the >= 7,000-character filter, which keeps
# ~65k in all (the study's 52k/6.5k/6.5k once merged and re-split, `split: study`); the filter is
# assumed to keep the same share of each split. >= 7,000 chars is >= ~1,600 tokens, mean assumed
# ~9,700 chars. ArXiv-11: splits from the dataset card; 1,650,691,690 bytes / 28,388 train
# documents = 58 kB ≈ 13,800 tokens (no_ref drops the references: assumed ~15 % shorter), so many
# are cut at 16384. Wikipedia 20231101.en: ~6.4M articles (the study used limit.train ~600k), mean
# ~600 tokens assumed (the shared sample's oldest articles average 3,250, most are stubs).
# WikiText-103 train: 28,475 articles (the loader rejoins lines into articles); 103.2M words x 1.11
# tokens per word (measured on WikiText-2 test) ≈ 4,000 tokens per article.
CATALOGUE = {
    ("imdb", None): ({"train": 25_000, "test": 25_000}, 311, 0.64),
    ("hyperpartisan", "byarticle"): ({"train": 645, "test": 628}, 735, 0.88),
    ("hyperpartisan", "bypublisher"): ({"train": 51_700, "validation": 12_950, "test": 350}, 2_300, 0.35),
    ("arxiv", "default"): ({"train": 28_388, "validation": 2_500, "test": 2_500}, 13_800, 0.6),
    ("arxiv", "no_ref"): ({"train": 28_388, "validation": 2_500, "test": 2_500}, 11_700, 0.6),
    ("wikipedia", None): ({"train": 6_407_814}, 600, 1.2),
    ("wikitext", None): ({"train": 28_475}, 4_000, 1.0),
}
DEFAULT_SUBSET = {"hyperpartisan": "byarticle", "arxiv": "default"}


class CostUnknown(ValueError):
    """The cost of a cell cannot be predicted; the message says why (`raygrid plan` shows "?")."""


@dataclass(frozen=True)
class Tokens:
    """Documents of one split and their tokens; `sq` = Σ n² over documents (attention grows with n)."""

    docs: float
    tokens: float
    sq: float

    @classmethod
    def of(cls, lengths) -> "Tokens":
        """Sizes of documents with these token counts (a numpy array)."""
        return cls(len(lengths), float(lengths.sum()), float((lengths ** 2).sum()))

    def scale(self, share: float) -> "Tokens":
        return Tokens(self.docs * share, self.tokens * share, self.sq * share)

    def __add__(self, other: "Tokens") -> "Tokens":
        return Tokens(self.docs + other.docs, self.tokens + other.tokens, self.sq + other.sq)

    @property
    def length(self) -> float:
        """Token-weighted mean sequence length Σn²/Σn: the N a token's attention cost sees."""
        return self.sq / self.tokens if self.tokens else 0.0


@dataclass(frozen=True)
class DataSize:
    splits: dict[str, Tokens]  # train, validation(, test) after split policy, limits, max_len
    source: str  # "cache" | "files" | "catalogue"

    @property
    def exact(self) -> bool:
        return self.source == "cache"


def data_size(cfg: CellConfig, cache_dir: str | Path | None = None) -> DataSize:
    """Documents and tokens per split of a cell: the tokenized cache, else local files, else CATALOGUE."""
    data, mlm = cfg.data, cfg.kind == "mlm"
    if cfg.model is not None and (cached := _cached_splits(cfg, cache_dir)):
        return DataSize(cached, "cache")
    # MLM keeps whole documents (+ a [SEP] each, cut into blocks later); fine-tuning caps each at max_len.
    extra, cap = (1, None) if mlm else (SPECIAL_TOKENS, data.max_len)
    if data.path:
        raw, source = _file_splits(data, extra, cap), "files"
    else:
        raw, source = _catalogue_splits(data, extra, cap), "catalogue"
    if data.dataset in CORPORA:  # documents read: the first limit.train; val_fraction of them held out
        train = raw["train"]
        splits = {"train": train.scale(1 - data.val_fraction), "validation": train.scale(data.val_fraction)}
    else:
        splits = split_policy(raw, data)
    if mlm:
        splits = {name: _blocks(split, data.max_len) for name, split in splits.items() if name != "test"}
    return DataSize(splits, source)


def split_policy(raw: dict[str, Tokens], data: DataConfig) -> dict[str, Tokens]:
    """raygrid.data.splits.apply_split_policy on sizes: study = merge, 80/10/10; then data.limit."""
    if data.split == "study":
        merged = sum(raw.values(), Tokens(0, 0, 0))
        splits = {"train": merged.scale(0.8), "validation": merged.scale(0.1), "test": merged.scale(0.1)}
    else:
        splits = dict(raw)
        if "test" not in splits:
            raise CostUnknown(f"data.split: {data.dataset} has no test split for the standard policy; use split: study")
        if "validation" not in splits:
            splits["validation"] = splits["train"].scale(data.val_fraction)
            splits["train"] = splits["train"].scale(1 - data.val_fraction)
    for name, split in splits.items():
        limit = getattr(data.limit, name)
        if limit is not None and limit < split.docs:
            splits[name] = split.scale(limit / split.docs)
    return {name: splits[name] for name in ("train", "validation", "test")}


def _blocks(split: Tokens, block_len: int) -> Tokens:
    """Documents concatenated and cut into full blocks of block_len ([CLS] + block_len - 2 + [SEP])."""
    blocks = split.tokens // (block_len - 2)
    return Tokens(blocks, blocks * block_len, blocks * block_len ** 2)


def _catalogue_splits(data: DataConfig, extra: int, cap: int | None) -> dict[str, Tokens]:
    key = (data.dataset, data.subset or DEFAULT_SUBSET.get(data.dataset))
    if key not in CATALOGUE:
        raise CostUnknown(f"data: no local path and {data.dataset} subset {key[1]} "
                          f"is not in raygrid.cost.sizes.CATALOGUE")
    docs, mean, sigma = CATALOGUE[key]
    if data.dataset in CORPORA and data.limit.train is not None:
        docs = {"train": min(docs["train"], data.limit.train)}
    mean1, mean2 = capped_lognormal_moments(mean + extra, sigma, cap)
    return {split: Tokens(n, n * mean1, n * mean2) for split, n in docs.items()}


def capped_lognormal_moments(mean: float, sigma: float, cap: float | None) -> tuple[float, float]:
    """E[min(X, cap)] and E[min(X, cap)²] for X lognormal with this mean and σ of log X."""
    mu = math.log(mean) - sigma ** 2 / 2
    if cap is None:
        return mean, math.exp(2 * mu + 2 * sigma ** 2)
    z = (math.log(cap) - mu) / sigma
    phi = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))  # noqa: E731 standard normal CDF
    above = 1 - phi(z)
    return (mean * phi(z - sigma) + cap * above,
            math.exp(2 * mu + 2 * sigma ** 2) * phi(z - 2 * sigma) + cap ** 2 * above)


def _file_splits(data: DataConfig, extra: int, cap: int | None) -> dict[str, Tokens]:
    """Characters of local files / CHARS_PER_TOKEN (+ extra) per document, capped at `cap`."""
    import numpy as np

    files = _local_files(data)
    wikitext = data.dataset == "wikitext"
    lengths = {split: _char_lengths(str(f), data.text_column, f.stat().st_mtime, wikitext)
               for split, f in files.items()}
    if data.dataset in CORPORA:  # one stream in file order: empty documents skipped, the first limit.train read
        stream = np.concatenate(list(lengths.values()))
        lengths = {"train": stream[stream > 0][:data.limit.train]}
    out = {}
    for split, chars in lengths.items():
        n = chars / CHARS_PER_TOKEN + extra
        out[split] = Tokens.of(np.minimum(n, cap) if cap else n)
    return out


def _local_files(data: DataConfig) -> dict[str, Path]:
    """The files the dataset adapter would read for data.path (see raygrid.data.sources)."""
    if data.dataset in CORPORA:
        from raygrid.data.mlm_text import local_files

        return {f"part{i}": f for i, f in enumerate(local_files(data.path))}
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
def _char_lengths(path: str, column: str, mtime: float, wikitext: bool = False):
    """Characters per document of one file's text column (nulls count 0); mtime keys the memo.

    wikitext: rows are lines, rejoined into articles at ` = Title = ` lines (as raygrid.data.mlm_text).
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
    chars = pc.utf8_length(text).to_numpy().astype(float)
    if wikitext:
        title = pc.and_(pc.match_substring_regex(text, r"^\s*= [^=]"), pc.match_substring_regex(text, r" =\s*$"))
        chars = np.bincount(np.cumsum(title.to_numpy(zero_copy_only=False)), weights=chars)
    return chars


def _cached_splits(cfg: CellConfig, cache_dir) -> dict[str, Tokens] | None:
    """Exact sizes from a finished tokenized-cache entry of the same data config and tokenizer.

    Matched by meta.json (data config + tokenizer), not by recomputing the content-hash key.
    """
    import pyarrow.parquet as pq

    from raygrid.data.cache import cache_root

    want = json.loads(json.dumps(cfg.data.rows_fields()))  # the cache meta.json records these
    tokenizers = {cfg.model.checkpoint, cfg.model.tokenizer}
    prefix = "mlm-" if cfg.kind == "mlm" else ""  # raygrid.data.mlm_data's entries: full blocks only
    root = cache_root(cache_dir)
    if "://" in root:  # a remote cache: listing it is not worth a slow `plan`; estimate instead
        return None
    for meta_file in sorted((Path(root) / "tokenized").glob(f"{prefix}{cfg.data.dataset}-*/meta.json")):
        try:
            meta = json.loads(meta_file.read_text())
            if meta.get("data") != want or meta.get("tokenizer") not in tokenizers:
                continue
            out = {}
            for split, stats in meta["splits"].items():
                if prefix:
                    out[split] = Tokens(stats["rows"], stats["tokens"], stats["tokens"] * meta["max_len"])
                    continue
                n = pq.read_table(meta_file.parent / f"{split}.parquet", columns=["n_tokens"])["n_tokens"]
                out[split] = Tokens.of(n.to_numpy().astype(float))
            return out
        except (OSError, ValueError, KeyError):
            continue
    return None
