"""Predicted cost of a grid before anything runs: tokens, model FLOPs and GPU-hours per cell.

FLOPs are counted as for dense transformers in Kaplan et al. 2020 ("Scaling Laws for Neural
Language Models", §2.1, Table 1), with both attention matmuls counted as in Hoffmann et al. 2022
(Chinchilla, Appendix F). Embeddings, biases, norms, softmax, RoPE and the classification head
are left out. Per token, with L blocks of width h, FFN width i, in a sequence of N tokens:

    forward  = L · (2·P_block + A(N)),   P_block = 4h² + f·h·i   (f = 2; 3 for a gated MLP, ModernBERT)
    training = 3 · forward (backward ≈ 2 × forward),   evaluation = forward
    A(N), the attention matmuls of one block, forward:
      softmax  4·h·N                (QKᵀ 2·N·h + AV 2·N·h)
      favor    4·h·(M + m)          (φ(q), φ(k): 2·2·m·h; K'ᵀV and Q'(K'ᵀV): 2·2·M·h; M = nb_features
                                     columns, m = random directions: M/2 for hyperbolic φ*, M for positive)
      lsh      R·(4·h·W + 2·h·B)    (each of R rounds: the W = min(chunk·(1 + back + forward), N) keys of
                                     the window as in softmax, plus hashing q and k with B/2 rotations)
    FAVOR+ is cheaper than softmax once N > M + m, LSH once N > R·W; for short inputs LSH costs R ×
    softmax (every round attends the whole sequence). N is the token-weighted mean length Σn²/Σn.
  MLM adds the prediction head (dense h×h + decoder h×V) on the mlm.mask_prob share of tokens that
  are predicted: raygrid.model.MaskedLM runs the vocabulary head on those positions only.
  model.n_freeze: for the first epochs//2 epochs nothing below the first trainable block needs a
  gradient, so training = forward · (1 + 2·(L − n)/L). Gradient checkpointing adds one forward of
  the trained blocks. Not counted: padding to the batch's longest row, the optimizer step;
  ModernBERT's sliding-window layers are counted as global attention (an upper bound).

Tokens per document: (a) exact from a tokenized cache entry of the same data config and tokenizer;
(b) from local files: characters / CHARS_PER_TOKEN (+2 special tokens), capped at data.max_len;
(c) hub sources: CATALOGUE (documents per split, mean length; lengths taken as lognormal and
capped analytically). MLM concatenates documents and cuts blocks of max_len (every block full).

GPU-hours = FLOPs / (resources.plan_tflops · 1e12) / 3600, summed over GPUs: more workers per trial
shorten the wall clock, not the GPU-hours. With resources.plan_tokens_per_s (measured training
tokens/s per GPU): hours = (training tokens + evaluation tokens / 3) / plan_tokens_per_s / 3600.
"""
from __future__ import annotations

import functools
import heapq
import json
import math
from dataclasses import dataclass
from pathlib import Path

from raygrid.config import CORPORA, STAGE_SCHEME, CellConfig, DataConfig, Resources
from raygrid.paths import is_local, resolve_location

# Characters per bert-base-uncased WordPiece token, measured on shared/data: IMDB 4.25, Hyperpartisan
# 4.62, enwiki 4.65, WikiText 4.71. 4.2 slightly over-counts news and Wikipedia (a safe side).
CHARS_PER_TOKEN = 4.2
SPECIAL_TOKENS = 2  # [CLS] ... [SEP] around each fine-tuning document

# Hub configs of well-known encoders, for when the HF cache has no copy (raygrid plan is offline).
KNOWN_SHAPES = {
    "google/bert_uncased_L-4_H-512_A-8": dict(num_hidden_layers=4, hidden_size=512, intermediate_size=2048,
                                              num_attention_heads=8, vocab_size=30522),  # BERT_SMALL
    "bert-base-uncased": dict(num_hidden_layers=12, hidden_size=768, intermediate_size=3072,
                              num_attention_heads=12, vocab_size=30522),
    "bert-large-uncased": dict(num_hidden_layers=24, hidden_size=1024, intermediate_size=4096,
                               num_attention_heads=16, vocab_size=30522),
    "answerdotai/ModernBERT-base": dict(num_hidden_layers=22, hidden_size=768, intermediate_size=1152,
                                        num_attention_heads=12, vocab_size=50368, model_type="modernbert"),
    "answerdotai/ModernBERT-large": dict(num_hidden_layers=28, hidden_size=1024, intermediate_size=2624,
                                         num_attention_heads=16, vocab_size=50368, model_type="modernbert"),
    "sentence-transformers/all-MiniLM-L6-v2": dict(num_hidden_layers=6, hidden_size=384, intermediate_size=1536,
                                                   num_attention_heads=12, vocab_size=30522),
}
KNOWN_SHAPES["google-bert/bert-base-uncased"] = KNOWN_SHAPES["bert-base-uncased"]

# (dataset, subset) -> (documents per split as the adapter delivers them, mean tokens per document
# before truncation, σ of log length). IMDB, Hyperpartisan byarticle: measured on shared/data with
# the bert-base-uncased vocabulary. Hub byarticle = 645 training articles + the official 628-article
# test (the Longformer 516/64/65 split exists only as local files). bypublisher: the study's
# 52k/6.5k/6.5k after the >= 7,000-character filter; >= 7,000 chars is >= ~1,600 tokens, mean
# assumed ~9,700 chars. ArXiv-11: splits from the dataset card; 1,650,691,690 bytes / 28,388 train
# documents = 58 kB ≈ 13,800 tokens (no_ref drops the references: assumed ~15 % shorter), so many
# are cut at 16384. Wikipedia 20231101.en: ~6.4M articles (the study used limit.train ~600k), mean
# ~600 tokens assumed (the shared sample's oldest articles average 3,250, most are stubs).
# WikiText-103 train: 28,475 articles (the loader rejoins lines into articles); 103.2M words x 1.11
# tokens per word (measured on WikiText-2 test) ≈ 4,000 tokens per article.
CATALOGUE = {
    ("imdb", None): ({"train": 25_000, "test": 25_000}, 311, 0.64),
    ("hyperpartisan", "byarticle"): ({"train": 645, "test": 628}, 735, 0.88),
    ("hyperpartisan", "bypublisher"): ({"train": 52_000, "validation": 6_500, "test": 6_500}, 2_300, 0.35),
    ("arxiv", "default"): ({"train": 28_388, "validation": 2_500, "test": 2_500}, 13_800, 0.6),
    ("arxiv", "no_ref"): ({"train": 28_388, "validation": 2_500, "test": 2_500}, 11_700, 0.6),
    ("wikipedia", None): ({"train": 6_407_814}, 600, 1.2),
    ("wikitext", None): ({"train": 28_475}, 4_000, 1.0),
}
DEFAULT_SUBSET = {"hyperpartisan": "byarticle", "arxiv": "default"}


class CostUnknown(ValueError):
    """The cost of a cell cannot be predicted; the message says why (`raygrid plan` shows "?")."""


# --- model -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Shape:
    layers: int
    hidden: int
    intermediate: int
    heads: int
    vocab: int
    gated: bool = False  # GLU MLP (ModernBERT): three h×i matrices instead of two
    source: str = ""

    @property
    def block_params(self) -> int:
        """Weights of one block without embeddings, biases, norms (Kaplan: 4h² + 2h·i)."""
        return 4 * self.hidden ** 2 + (3 if self.gated else 2) * self.hidden * self.intermediate


def model_shape(cell) -> Shape:
    """Shape of a cell's encoder: its checkpoint's config (following `stage:` parents) + config_overrides."""
    overrides: dict = {}
    node, depth = cell, 0
    while True:
        model = node.config.model
        overrides = {**model.config_overrides, **overrides}  # a later stage's overrides win
        if not model.checkpoint.startswith(STAGE_SCHEME):
            break
        node, depth = getattr(node, "parent", None), depth + 1
        if node is None or depth > 100:
            raise CostUnknown(f"{model.checkpoint}: the parent cell is not known")
    config, source = checkpoint_config(model.checkpoint)
    return shape_from_config({**config, **overrides},
                             f"{model.checkpoint} via {source}{' + config_overrides' if overrides else ''}")


def checkpoint_config(location: str) -> tuple[dict, str]:
    """(HF config dict, where it came from) of a local/pkg:// folder or a hub id, offline."""
    if is_local(location):
        try:
            file = Path(resolve_location(location)).expanduser() / "config.json"
            return json.loads(file.read_text()), "config.json"
        except (OSError, ValueError) as err:
            raise CostUnknown(f"{location}: no readable config.json ({err})") from None
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(location, "config.json")
        if isinstance(cached, str):
            return json.loads(Path(cached).read_text()), "HF cache"
    except Exception:  # an id the hub client rejects, a broken cache: fall through to the table
        pass
    if location in KNOWN_SHAPES:
        return dict(KNOWN_SHAPES[location]), "built-in table"
    raise CostUnknown(f"{location}: shape unknown offline (not a local folder, not in the HF cache, "
                      f"not in raygrid.cost.KNOWN_SHAPES)")


def shape_from_config(config: dict, source: str = "") -> Shape:
    try:
        hidden = int(config["hidden_size"])
        return Shape(int(config["num_hidden_layers"]), hidden, int(config.get("intermediate_size") or 4 * hidden),
                     int(config["num_attention_heads"]), int(config["vocab_size"]),
                     gated=config.get("model_type") == "modernbert", source=source)
    except (KeyError, TypeError, ValueError) as err:
        raise CostUnknown(f"model config ({source}) lacks {err}") from None


def attention_flops(attention, n: float, hidden: int) -> float:
    """Forward FLOPs per token of one block's attention matmuls, in a sequence of n tokens."""
    if attention.kind == "favor":
        return 4 * hidden * (attention.nb_features + attention.num_omegas)
    if attention.kind == "lsh":
        window = min(attention.chunk_size * (1 + attention.look_backward + attention.look_forward), n)
        buckets = attention.num_buckets or max(2, 2 * math.ceil(n / attention.chunk_size / 2))
        return attention.num_hashes * (4 * hidden * window + 2 * hidden * buckets)
    return 4 * hidden * n


def forward_flops(shape: Shape, attention, n: float) -> float:
    """Encoder forward FLOPs per token (no head)."""
    return shape.layers * (2 * shape.block_params + attention_flops(attention, n, shape.hidden))


def mlm_head_flops(shape: Shape) -> float:
    """Forward FLOPs of the MLM head (transform h×h + decoder h×V) per *predicted* token."""
    return 2 * (shape.hidden ** 2 + shape.hidden * shape.vocab)


def head_flops_per_token(cfg: CellConfig, shape: Shape) -> float:
    """Forward FLOPs of the head per input token: the MLM head on mask_prob of them; a classifier ~0."""
    return mlm_head_flops(shape) * cfg.mlm.mask_prob if cfg.kind == "mlm" else 0.0


def train_flops_per_token(cfg: CellConfig, shape: Shape, n: float, frozen: int = 0) -> float:
    """Forward + backward FLOPs per token with the bottom `frozen` blocks (and embeddings) frozen."""
    head = head_flops_per_token(cfg, shape)
    trained = (shape.layers - min(frozen, shape.layers)) / shape.layers
    backward = 2 + int(cfg.model.gradient_checkpointing)  # backward ≈ 2 forwards (+1 recompute)
    return forward_flops(shape, cfg.attention, n) * (1 + backward * trained) + 3 * head


# --- data ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tokens:
    """Documents of one split and their tokens; `sq` = Σ n² over documents (attention grows with n)."""

    docs: float
    tokens: float
    sq: float

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
            raise CostUnknown(f"data.split: {data.dataset} has no test split for the standard policy")
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
        raise CostUnknown(f"data: no local path and {data.dataset} subset {key[1]} is not in raygrid.cost.CATALOGUE")
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
        n = np.minimum(n, cap) if cap else n
        out[split] = Tokens(len(n), float(n.sum()), float((n ** 2).sum()))
    return out


def _local_files(data: DataConfig) -> dict[str, Path]:
    """The files the dataset adapter would read for data.path (see raygrid.data.sources)."""
    if data.dataset in CORPORA:
        from raygrid.data.mlm_text import local_files

        return {f"part{i}": f for i, f in enumerate(local_files(data.path))}
    from raygrid.data.sources import _find_file, _find_split_file

    folder = Path(resolve_location(data.path)).expanduser()
    if data.dataset == "hyperpartisan" and data.subset == "byarticle_semeval":
        files = {"train": _find_file(folder, "hyperpartisan_byarticle_all"),
                 "test": _find_file(folder, "hyperpartisan_semeval_test")}
    else:
        prefix = None if data.dataset == "local" else data.dataset
        files = {split: _find_split_file(folder, split, prefix) for split in ("train", "validation", "test")}
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

    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        table = pq.read_table(path, columns=[column])
    else:
        from raygrid.data.sources import read_table

        table = read_table(Path(path))
    if column not in table.column_names:
        raise CostUnknown(f"{path}: no column {column!r}")
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

    want = json.loads(cfg.data.model_dump_json())
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
                n = n.to_numpy().astype(float)
                out[split] = Tokens(len(n), float(n.sum()), float((n ** 2).sum()))
            return out
        except (OSError, ValueError, KeyError):
            continue
    return None


# --- cells and grids -------------------------------------------------------------------------------

@dataclass(frozen=True)
class CellCost:
    """Predicted work of one cell; `unknown` says why it could not be predicted (then shown as "?")."""

    train_tokens: float = 0.0  # per epoch
    epochs: int = 0
    eval_tokens: float = 0.0  # all validation passes + the test pass
    flops: float = 0.0
    gpu_hours: float = 0.0
    source: str = ""  # where the sizes come from: cache (exact), files, catalogue
    model: str = ""  # checkpoint and shape, for the notes under the table
    unknown: str | None = None
    cpu_only: bool = False  # the TF-IDF baseline


def cell_cost(cell, resources: Resources, cache_dir: str | Path | None = None) -> CellCost:
    """Tokens, FLOPs and GPU-hours of one cell (train epochs + validation each epoch + test once)."""
    cfg: CellConfig = cell.config
    if cfg.kind == "tfidf":
        return CellCost(cpu_only=True, source="TF-IDF + LR on CPU")
    try:
        shape = model_shape(cell)
        size = data_size(cfg, cache_dir)
    except Exception as err:  # the plan is advice: a cell it cannot price is "?", never a crash
        reason = err if isinstance(err, CostUnknown) else f"{type(err).__name__}: {err}"
        return CellCost(unknown=str(reason))
    train, val, test = size.splits["train"], size.splits["validation"], size.splits.get("test")
    epochs = cfg.optim.epochs
    frozen_epochs = epochs // 2 if cfg.model.n_freeze else 0
    flops = train.tokens * (frozen_epochs * train_flops_per_token(cfg, shape, train.length, cfg.model.n_freeze)
                            + (epochs - frozen_epochs) * train_flops_per_token(cfg, shape, train.length))
    head = head_flops_per_token(cfg, shape)
    evals = [(val, epochs)] + ([(test, 1)] if test else [])
    flops += sum(k * s.tokens * (forward_flops(shape, cfg.attention, s.length) + head) for s, k in evals)
    eval_tokens = sum(k * s.tokens for s, k in evals)
    model = (f"{shape.layers} layers x {shape.hidden} (FFN {shape.intermediate}, {shape.heads} heads, "
             f"vocab {shape.vocab}): {shape.source}")
    return CellCost(train.tokens, epochs, eval_tokens, flops,
                    gpu_hours(flops, resources, train.tokens * epochs, eval_tokens), size.source, model)


def gpu_hours(flops: float, resources: Resources, train_tokens: float = 0.0, eval_tokens: float = 0.0) -> float:
    """GPU-hours from plan_tokens_per_s when set (evaluation runs ~3x faster), else from plan_tflops."""
    if resources.plan_tokens_per_s:
        return (train_tokens + eval_tokens / 3) / resources.plan_tokens_per_s / 3600
    return flops / (resources.plan_tflops * 1e12) / 3600


def wall_clock_hours(cells, costs: list[CellCost], resources: Resources) -> float | None:
    """Trials started in order on max_concurrent_trials slots, stage after stage; None if not set.

    A trial's wall clock is its GPU-hours / (workers_per_trial x gpus_per_worker) (perfect scaling).
    """
    slots = resources.max_concurrent_trials
    if slots is None:
        return None
    gpus = resources.workers_per_trial * resources.gpus_per_worker
    total = 0.0
    for stage in dict.fromkeys(getattr(cell, "stage", None) for cell in cells):
        finish = [0.0] * slots  # a heap of the times the slots become free
        for cell, cost in zip(cells, costs):
            if getattr(cell, "stage", None) == stage:
                heapq.heapreplace(finish, finish[0] + cost.gpu_hours / gpus)
        total += max(finish)
    return total


def plan_lines(grid, cache_dir: str | Path | None = None) -> list[str]:
    """`raygrid plan`'s table: one line per cell with its cost, notes, and the total over the grid."""
    resources = grid.spec.resources
    costs = [cell_cost(cell, resources, cache_dir) for cell in grid.cells]
    width = max([len("cell")] + [len(cell.name) for cell in grid.cells])
    lines = [f"{'#':>4}  {'cell':<{width}}  {'tokens/epoch':>12}  {'epochs':>6}  {'PFLOP':>9}  {'GPU-h':>9}  sizes"]
    unknown: dict[str, list[int]] = {}
    for i, (cell, cost) in enumerate(zip(grid.cells, costs), 1):
        if cost.unknown:
            unknown.setdefault(cost.unknown, []).append(i)
            row = ("?", "?", "?", "?", "see note")
        elif cost.cpu_only:
            row = ("-", "-", "0", "cpu", cost.source)
        else:
            tokens = ("" if cost.source == "cache" else "~") + _si(cost.train_tokens)
            row = (tokens, str(cost.epochs), _g(cost.flops / 1e15), _g(cost.gpu_hours),
                   "cache (exact)" if cost.source == "cache" else f"{cost.source} (estimate)")
        lines.append(f"{i:4d}  {cell.name:<{width}}  {row[0]:>12}  {row[1]:>6}  {row[2]:>9}  {row[3]:>9}  {row[4]}")
    lines += [f"  model {m}" for m in dict.fromkeys(c.model for c in costs if c.model)]
    lines += [f"  ? cells {', '.join(map(str, idx))}: {reason}" for reason, idx in unknown.items()]
    external = {getattr(c, "parent_grid", None) for c in grid.cells if getattr(c, "parent", None) is not None}
    external -= {None, grid.name}
    if external:
        lines.append(f"  cells start from weights of grid {', '.join(sorted(external))}: priced by its own plan")
    lines.append(_total_line(grid, costs, resources))
    return lines


def _total_line(grid, costs: list[CellCost], resources: Resources) -> str:
    priced = [c for c in costs if not c.unknown and not c.cpu_only]
    flops, hours = sum(c.flops for c in priced), sum(c.gpu_hours for c in priced)
    rate = (f"{resources.plan_tokens_per_s:g} tokens/s per GPU (resources.plan_tokens_per_s)"
            if resources.plan_tokens_per_s else f"{resources.plan_tflops:g} TFLOP/s per GPU (resources.plan_tflops)")
    wall = wall_clock_hours(grid.cells, costs, resources)
    if wall is None:
        gpus = resources.workers_per_trial * resources.gpus_per_worker
        when = f"wall-clock {_g(hours / gpus)} h one trial at a time (set resources.max_concurrent_trials)"
    else:
        when = f"wall-clock {_g(wall)} h with {resources.max_concurrent_trials} trials at a time"
    missing = len(costs) - len(priced) - sum(c.cpu_only for c in costs)
    unpriced = f"; {missing} cell(s) not priced (?), so a lower bound" if missing else ""
    return (f"total: {len(priced)} model cells, {_g(flops / 1e15)} PFLOP, {_g(hours)} GPU-h at {rate}; "
            f"{when}{unpriced}")


def _si(x: float) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.0f}"


def _g(x: float) -> str:
    return f"{x:,.0f}" if x >= 1000 else f"{x:.3g}"
