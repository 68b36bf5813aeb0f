"""Predicted cost of a grid before anything runs: tokens, model FLOPs and GPU-hours per cell.

FLOPs are counted as for dense transformers in Kaplan et al. 2020 ("Scaling Laws for Neural
Language Models", §2.1, Table 1), with both attention matmuls counted as in Hoffmann et al. 2022
(Chinchilla, Appendix F). Embeddings, biases, norms, softmax, RoPE and the classification head
are left out. Per token, with L blocks of width h, FFN width i, in a sequence of N tokens:

    forward  = L · (2·P_block + A(N)),   P_block = 4h² + f·h·i   (f = 2; 3 for a gated MLP, ModernBERT)
    training = 3 · forward (backward ≈ 2 × forward),   evaluation = forward
    A(N), the attention matmuls of one block, forward: each variant's record gives its formula
    (`flops` in raygrid/attention/variants/<kind>.py), e.g.
      softmax  4·h·N                (QKᵀ 2·N·h + AV 2·N·h)
      favor    4·h·(M + m)          (φ(q), φ(k): 2·2·m·h; K'ᵀV and Q'(K'ᵀV): 2·2·M·h; M = nb_features
                                     columns, m = random directions: M/2 for hyperbolic φ*, M for positive)
      lsh      R·(4·h·W + 2·h·B)    (each of R rounds: the W = min(chunk·(1 + back + forward), N) keys of
                                     the window as in softmax, plus hashing q and k with B/2 rotations)
      linear   4·h·(d + 1)          (Σφ(k)vᵀ and φ(q)ᵀ(Σφ(k)vᵀ): 2·2·d·h, d = h/heads; normaliser: one column)
    FAVOR+ is cheaper than softmax once N > M + m, LSH once N > R·W, linear once N > d + 1; for short
    inputs LSH costs R × softmax (every round attends the whole sequence). N is the token-weighted mean
    length Σn²/Σn.
  MLM adds the prediction head (dense h×h + decoder h×V) on the mlm.mask_prob share of tokens that
  are predicted: raygrid.model.encoder.MaskedLM runs the vocabulary head on those positions only.
  model.n_freeze: for the first epochs//2 epochs nothing below the first trainable block needs a
  gradient, so training = forward · (1 + 2·(L − n)/L). Gradient checkpointing adds one forward of
  the trained blocks. Not counted: padding to the batch's longest row, the optimizer step;
  ModernBERT's sliding-window layers are counted as global attention (an upper bound).

Documents and tokens per split come from raygrid.cost.sizes (cache, local files or its CATALOGUE).

GPU-hours = FLOPs / (resources.plan_tflops · 1e12) / 3600, summed over GPUs: more workers per trial
shorten the wall clock, not the GPU-hours. With resources.plan_tokens_per_s (measured training
tokens/s per GPU): hours = (training tokens + evaluation tokens / 3) / plan_tokens_per_s / 3600.
"""
from __future__ import annotations

import heapq
import json
from dataclasses import dataclass
from pathlib import Path

from raygrid.attention.registry import variant_of
from raygrid.spec.config import STAGE_SCHEME, CellConfig, Resources
from raygrid.cost.sizes import CostUnknown, data_size
from raygrid.spec.paths import is_local, resolve_location

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
                      f"not in raygrid.cost.estimate.KNOWN_SHAPES)")


def shape_from_config(config: dict, source: str = "") -> Shape:
    try:
        hidden = int(config["hidden_size"])
        return Shape(int(config["num_hidden_layers"]), hidden, int(config.get("intermediate_size") or 4 * hidden),
                     int(config["num_attention_heads"]), int(config["vocab_size"]),
                     gated=config.get("model_type") == "modernbert", source=source)
    except (KeyError, TypeError, ValueError) as err:
        raise CostUnknown(f"model config ({source}) lacks {err}") from None


def attention_flops(attention, n: float, hidden: int, heads: int = 1) -> float:
    """Forward FLOPs per token of one block's attention matmuls, in a sequence of n tokens (the record's formula).

    `heads` matters only to variants whose cost grows with the head width (linear attention's d×d state);
    the default, one head as wide as the block, is their upper bound.
    """
    return variant_of(attention).flops(attention, n, hidden, heads)


def forward_flops(shape: Shape, attention, n: float) -> float:
    """Encoder forward FLOPs per token (no head)."""
    return shape.layers * (2 * shape.block_params + attention_flops(attention, n, shape.hidden, shape.heads))


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
    train, val, test = size.splits["train"], size.splits.get("validation"), size.splits.get("test")
    epochs = cfg.optim.epochs
    frozen_epochs = epochs // 2 if cfg.model.n_freeze else 0
    flops = train.tokens * (frozen_epochs * train_flops_per_token(cfg, shape, train.length, cfg.model.n_freeze)
                            + (epochs - frozen_epochs) * train_flops_per_token(cfg, shape, train.length))
    head = head_flops_per_token(cfg, shape)
    evals = ([(val, epochs)] if val else []) + ([(test, 1)] if test else [])  # val_fraction 0: no validation
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
    total = 0.0
    for stage in dict.fromkeys(getattr(cell, "stage", None) for cell in cells):
        finish = [0.0] * slots  # a heap of the times the slots become free
        for cell, cost in zip(cells, costs):
            if getattr(cell, "stage", None) == stage:
                res = getattr(cell, "resources", resources)  # a cell's own placement, if it has one
                heapq.heapreplace(finish, finish[0] + cost.gpu_hours / (res.workers_per_trial * res.gpus_per_worker))
        total += max(finish)
    return total


def plan_lines(grid, cache_dir: str | Path | None = None) -> list[str]:
    """`raygrid plan`'s table: one line per cell with its cost, notes, and the total over the grid."""
    resources = grid.spec.resources
    costs = [cell_cost(cell, getattr(cell, "resources", resources), cache_dir) for cell in grid.cells]
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
    missing = sum(1 for c in costs if c.unknown)
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
