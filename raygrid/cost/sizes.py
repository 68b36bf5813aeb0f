"""How many documents and tokens a cell's data has: cache, local files, or a catalogue of the hub datasets.

Tokens per document: (a) exact from a tokenized cache entry of the same data config and tokenizer;
(b) from local files: characters / CHARS_PER_TOKEN (+2 special tokens), capped at data.max_len;
(c) hub sources: CATALOGUE (documents per split, mean length; lengths taken as lognormal and
capped analytically). Then the split policy as raygrid.data.splits applies it (the study's rules
give exact row counts), val_fraction and data.limit. MLM: `packed` concatenates documents and cuts
full max_len blocks; `document` keeps one sequence per document, capped at max_len, the first
`short_rows` training sequences at `short_len`. raygrid.cost.estimate turns sizes into FLOPs and GPU-hours.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from raygrid.cost.file_sizes import CostUnknown, corpus_chars, split_chars
from raygrid.spec.config import CORPORA, CellConfig, DataConfig

# Characters per bert-base-uncased WordPiece token, measured on shared/data: IMDB 4.25, Hyperpartisan
# 4.62, enwiki 4.65, WikiText 4.71. 4.2 slightly over-counts news and Wikipedia (a safe side).
CHARS_PER_TOKEN = 4.2
SPECIAL_TOKENS = 2  # [CLS] ... [SEP] around each document sequence

# (dataset, subset or corpus rule) -> (documents per shipped split, mean tokens per document before
# truncation, σ of log length). IMDB, Hyperpartisan byarticle: measured on shared/data with the
# bert-base-uncased vocabulary. Hub byarticle = 645 training articles + the official 628-article
# test (the Longformer 516/64/65 split exists only as local files). bypublisher: the official
# 600k training / 150k validation / 4k test articles after the >= 7,000-character filter (~65k in
# all; the study balances and resizes them to 52,000 / 13,000, see `study_counts`); >= 7,000 chars is
# >= ~1,600 tokens, mean assumed ~9,700 chars. ArXiv-11: splits from the dataset card; 1,650,691,690
# bytes / 28,388 train documents = 58 kB ≈ 13,800 tokens (no_ref drops the references: assumed ~15 %
# shorter), so many are cut at 16384. Wikipedia 20231101.en: ~6.4M articles, mean ~600 tokens assumed
# (the shared sample's oldest articles average 3,250, most are stubs). ("wikipedia", "study"): the
# study's kept articles cut to 600 words; the lognormal is fitted so that the mean sequence, [CLS]
# and [SEP] included, is 127.4 tokens capped at 128 and 452.4 capped at 512, as the study measured
# (450,000 x 127.4 + 150,000 x 452.4 ≈ 125 M tokens per epoch). WikiText-103 train: 28,475
# articles (the loader rejoins lines into articles); 103.2M words x 1.11 tokens per word (measured
# on WikiText-2 test) ≈ 4,000 tokens per article.
CATALOGUE = {
    ("imdb", None): ({"train": 25_000, "test": 25_000}, 311, 0.64),
    ("hyperpartisan", "byarticle"): ({"train": 645, "test": 628}, 735, 0.88),
    ("hyperpartisan", "bypublisher"): ({"train": 51_700, "validation": 12_950, "test": 350}, 2_300, 0.35),
    ("arxiv", "default"): ({"train": 28_388, "validation": 2_500, "test": 2_500}, 13_800, 0.6),
    ("arxiv", "no_ref"): ({"train": 28_388, "validation": 2_500, "test": 2_500}, 11_700, 0.6),
    ("wikipedia", None): ({"train": 6_407_814}, 600, 1.2),
    ("wikipedia", "study"): ({"train": 6_407_814}, 1_175.5, 0.882),
    ("wikitext", None): ({"train": 28_475}, 4_000, 1.0),
}
DEFAULT_SUBSET = {"hyperpartisan": "byarticle", "arxiv": "default"}
# The study's rules (raygrid.data.study_splits): which shipped splits feed them, in order.
STUDY_PARTS = {"imdb": ("test", "train"), "arxiv": ("test", "train", "validation")}


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
    packed = mlm and data.mlm_layout == "packed"
    # Packed MLM keeps whole documents (+ a [SEP] each, cut into blocks later); sequences cap at max_len.
    extra, cap = (1, None) if packed else (SPECIAL_TOKENS, data.max_len)
    source = "files" if data.path and _readable_files(data) else "catalogue"
    if data.dataset in CORPORA:  # documents read: the first limit.train (kept); val_fraction held out
        splits = _corpus_splits(data, extra, cap, source)
    else:
        raw = _file_splits(data, extra, cap) if source == "files" else _catalogue_splits(data, extra, cap)
        splits = split_policy(raw, data)
    if mlm:
        splits = {name: _blocks(split, data.max_len) if packed else split
                  for name, split in splits.items() if name != "test" and split.docs}
    return DataSize(splits, source)


def _readable_files(data: DataConfig) -> bool:
    """Local Parquet/CSV/JSONL files to measure (Hyperpartisan's XML archives are priced from the catalogue)."""
    return not (data.dataset == "hyperpartisan" and data.subset == "bypublisher")


def _corpus_splits(data: DataConfig, extra: int, cap: int | None, source: str) -> dict[str, "Tokens"]:
    """The kept documents of a corpus, train then validation; document sequences with the short first rows."""
    share = {"train": 1 - data.val_fraction, "validation": data.val_fraction}
    short = (data.short_rows or 0) if cap is not None else 0
    if source == "files":  # each document's length; the reader routes documents at random (val_fraction)
        import numpy as np

        lengths = corpus_chars(data) / CHARS_PER_TOKEN + extra
        caps = np.full(len(lengths), cap if cap else np.inf)
        caps[:short] = data.short_len
        whole = Tokens.of(np.minimum(lengths, caps))
        out = {name: whole.scale(fraction) for name, fraction in share.items()}
    else:
        counts, mean, sigma = _catalogue_entry(data)
        total = min(counts["train"], data.limit.train or counts["train"])
        out = {name: _lognormal(total * fraction, mean + extra, sigma, cap) for name, fraction in share.items()}
        if short:
            head = min(short, out["train"].docs)
            out["train"] = (_lognormal(head, mean + extra, sigma, data.short_len)
                            + _lognormal(out["train"].docs - head, mean + extra, sigma, cap))
    return {name: split for name, split in out.items() if split.docs}


def _lognormal(docs: float, mean: float, sigma: float, cap: float | None) -> "Tokens":
    mean1, mean2 = capped_lognormal_moments(mean, sigma, cap)
    return Tokens(docs, docs * mean1, docs * mean2)


def split_policy(raw: dict[str, Tokens], data: DataConfig) -> dict[str, Tokens]:
    """raygrid.data.splits.route on sizes: standard, the study's rules (exact counts), resplit; then data.limit."""
    if data.split == "study":
        splits = _study_splits(raw, data)
    elif data.split == "resplit":
        merged = sum(raw.values(), Tokens(0, 0, 0))
        splits = {"train": merged.scale(0.8), "validation": merged.scale(0.1), "test": merged.scale(0.1)}
    else:
        splits = dict(raw)
        if "test" not in splits:
            raise CostUnknown(f"data.split: {data.dataset} has no test split for the standard policy; "
                              f"use split: resplit")
        if "validation" not in splits:
            splits["validation"] = splits["train"].scale(data.val_fraction)
            splits["train"] = splits["train"].scale(1 - data.val_fraction)
    for name, split in splits.items():
        limit = getattr(data.limit, name)
        if limit is not None and limit < split.docs:
            splits[name] = split.scale(limit / split.docs)
    return {name: splits[name] for name in ("train", "validation", "test")}


def _study_splits(raw: dict[str, Tokens], data: DataConfig) -> dict[str, Tokens]:
    """Row counts of the study's rules (scikit-learn: test part = ceil(share x rows)) at the parts' mean lengths."""
    if data.dataset == "hyperpartisan" and data.subset == "bypublisher":
        train_rows, heldout = (data.study_sizes.train, data.study_sizes.heldout) if data.study_sizes else (52_000, 13_000)
        test = math.ceil(0.5 * heldout)
        counts = {"train": (train_rows, ("train",)), "validation": (heldout - test, ("validation",)),
                  "test": (test, ("validation",))}
    elif data.dataset in STUDY_PARTS:
        parts = STUDY_PARTS[data.dataset]
        total = sum(raw[part].docs for part in parts if part in raw)
        rest = math.ceil(0.2 * total)
        second = math.ceil(0.5 * rest)
        counts = {"train": (total - rest, parts), "validation": (rest - second if data.dataset == "imdb" else second,
                  parts), "test": (second if data.dataset == "imdb" else rest - second, parts)}
    else:
        raise CostUnknown(f"data.split: study is the study's rule for imdb, arxiv and hyperpartisan/bypublisher, "
                          f"not {data.dataset}")
    out = {}
    for name, (rows, parts) in counts.items():
        pool = sum((raw[part] for part in parts if part in raw), Tokens(0, 0, 0))
        if not pool.docs:
            raise CostUnknown(f"data.split: study: {data.dataset} lacks its {', '.join(parts)} split")
        out[name] = pool.scale(rows / pool.docs)
    return out


def _blocks(split: Tokens, block_len: int) -> Tokens:
    """Documents concatenated and cut into full blocks of block_len ([CLS] + block_len - 2 + [SEP])."""
    blocks = split.tokens // (block_len - 2)
    return Tokens(blocks, blocks * block_len, blocks * block_len ** 2)


def _catalogue_entry(data: DataConfig):
    sub = data.corpus_rule if data.dataset in CORPORA and data.corpus_rule != "none" else None
    key = (data.dataset, data.subset or DEFAULT_SUBSET.get(data.dataset)) if data.dataset not in CORPORA \
        else (data.dataset, sub)
    if key not in CATALOGUE:
        raise CostUnknown(f"data: no local path and {data.dataset} subset {key[1]} "
                          f"is not in raygrid.cost.sizes.CATALOGUE")
    return CATALOGUE[key]


def _file_splits(data: DataConfig, extra: int, cap: int | None) -> dict[str, Tokens]:
    """Characters of local files / CHARS_PER_TOKEN (+ extra) per document, capped at `cap`."""
    import numpy as np

    out = {}
    for split, chars in split_chars(data).items():
        n = chars / CHARS_PER_TOKEN + extra
        out[split] = Tokens.of(np.minimum(n, cap) if cap else n)
    return out


def _catalogue_splits(data: DataConfig, extra: int, cap: int | None) -> dict[str, Tokens]:
    docs, mean, sigma = _catalogue_entry(data)
    return {split: _lognormal(n, mean + extra, sigma, cap) for split, n in docs.items()}


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


def _cached_splits(cfg: CellConfig, cache_dir) -> dict[str, Tokens] | None:
    """Exact sizes from a finished tokenized-cache entry of the same data config and tokenizer.

    Matched by meta.json (data config + tokenizer), not by recomputing the content-hash key.
    """
    import pyarrow.parquet as pq

    from raygrid.data.cache import cache_root

    from raygrid.spec.redact import redact_tree

    want = redact_tree(json.loads(json.dumps(cfg.data.rows_fields())))  # the cache meta.json records these (redacted)
    tokenizers = {cfg.model.checkpoint, cfg.model.tokenizer}
    prefix = "mlm-" if cfg.kind == "mlm" else ""  # raygrid.data.mlm_data's entries
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
                if prefix and meta.get("layout", "packed") == "packed":  # full blocks of max_len
                    out[split] = Tokens(stats["rows"], stats["tokens"], stats["tokens"] * meta["max_len"])
                    continue
                n = pq.read_table(meta_file.parent / f"{split}.parquet", columns=["n_tokens"])["n_tokens"]
                out[split] = Tokens.of(n.to_numpy().astype(float))
            return out
        except (OSError, ValueError, KeyError):
            continue
    return None
