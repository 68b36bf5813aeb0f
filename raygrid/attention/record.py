"""The record of one attention variant: everything every consumer needs, in one frozen dataclass.

A record is torch-free: its params model, labels, FLOP formula, bench rows and plan notes are plain
Python, and its torch side (kernel, transformers adapter, per-layer state hooks) is named, not imported:
`hook(name)` loads `kernel_module` on first use. So the config, `raygrid --help` and `plan` never load
torch, and a model build loads exactly the kernels its cells use.

Hooks the kernel module may define (names are the record's fields; None = the variant has none):
  kernel(q, k, v, key_padding_mask, *, params, scaling=None, ...) -> out       q/k/v/out (B, H, N, D)
  adapter(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kw) -> (out (B, N, H, D), None)
      transformers' AttentionInterface calling convention (raygrid.attention.hf_bridge registers it)
  attach(module, params, seed, layer)        per-layer state on the HF attention module (buffers, seeds, ties)
  redraw(module, params, step) -> bool       after optimizer step `step` (training only, at the steps the
                                             record's `redraw_every` names): refresh random state
  export_state(hf_model) -> state dict       the weights as save_pretrained must write them (LSH: tied Q = K)
  bench_setup()                              prepare a process that compiles many settings (bench, gpu-check)
  standalone(params, head_dim, seed) -> fn(q, k, v, key_padding_mask)   the kernel with its state, for the bench
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from pydantic import BaseModel


@dataclass(frozen=True)
class Ablation:
    """An on/off setting of a variant whose MLM loss curves the report draws side by side.

    The study's example: LSH with and without masking within chunks (research_design.md).
    """

    param: str  # a field of the variant's params model
    stem: str  # the figure's file: <grid>.<stem>.png
    title: str


@dataclass(frozen=True)
class Variant:
    """One attention variant. `kind` is the YAML value, the registry key and the record module's name."""

    kind: str
    params: type[BaseModel]  # strict pydantic model with `kind: Literal[<kind>]`
    title: str  # human name with its paper, for docs and tables
    kernel_module: str  # dotted module holding the torch hooks below
    # Forward FLOPs per token of one block's attention matmuls in a sequence of n tokens (raygrid.cost).
    flops: Callable[[Any, float, int, int], float]  # (params, n, hidden, heads) -> FLOPs
    bench: tuple[tuple[str, dict], ...]  # `raygrid bench attention` rows: (label, params fields)
    # (label, params fields) of the variant as the study runs it (research_design.md): the rows of the
    # kernel table and the study-shaped cells of `make gpu-check`. None = the params' defaults.
    study: tuple[str, dict] | None = None
    kernel: str = "attention"
    adapter: str = "hf_forward"
    attach: str | None = None
    redraw: str | None = None
    standalone: str | None = None
    export_state: str | None = None
    bench_setup: str | None = None
    # Optimizer steps between `redraw` calls for these params (0 = never: the loop gets no step hook).
    redraw_every: Callable[[Any], int] | None = None
    # Per-layer buffers that must travel with exported weights (HF drops unknown keys when loading).
    state_buffers: tuple[str, ...] = ()
    # True = its layers read a count of training forwards (hf_bridge keeps it, checkpoints save it).
    counts_forwards: bool = False
    # The exact reference the others are measured against (bench error rows, report pairs).
    reference: bool = False
    # A transformers built-in implementation name for these params (no rotary positions), or None.
    builtin_implementation: Callable[[Any], str | None] | None = None
    # Settings whose on/off loss curves `raygrid report` plots (raygrid.report.publish).
    ablations: tuple[Ablation, ...] = ()
    # One line `raygrid plan` prints per distinct setting (e.g. LSH's rules), or None.
    plan_note: Callable[[Any], str] | None = None
    # Why `data.max_len` does not suit these params (checked before any trial starts), or None.
    length_check: Callable[[Any, int], str | None] | None = None
    # Why these params cannot start from the encoder weights a cell names, or None. `weights` is
    # "scratch" (model.from_scratch), "checkpoint" (pretrained weights) or "stage" (an earlier stage's
    # cell); `parent` is that stage cell's attention params where known (the grid's stage links), else None.
    # The message names the key (`attention.qk: ...`); config and stage checks call it, never a kind.
    cell_check: Callable[[Any, str, Any], str | None] | None = None
    # The params the layers run with, settings that follow `data.max_len` fixed (LSH num_buckets: max_len);
    # the cell keeps the unfixed value (so stages of other lengths still match). None = params as they are.
    for_max_len: Callable[[Any, int | None], Any] | None = None

    def hook(self, name: str) -> Callable | None:
        """The torch-side function the record names under `name` (None when the variant has none)."""
        attribute = getattr(self, name)
        if attribute is None:
            return None
        module = importlib.import_module(self.kernel_module)
        try:
            return getattr(module, attribute)
        except AttributeError:
            raise AttributeError(f"attention variant {self.kind!r}: {self.kernel_module} has no {name} "
                                 f"function {attribute!r}") from None

    def study_params(self) -> tuple[str, Any]:
        """(label, params) of the study's setting of this variant (its defaults when the record names none)."""
        label, fields = self.study or (self.kind, {})
        return label, self.params.model_validate(fields)

    def standalone_kernel(self, params, head_dim: int, seed: int = 0) -> Callable:
        """fn(q, k, v, key_padding_mask) with the variant's state drawn from `seed` (bench, tests)."""
        build = self.hook("standalone")
        if build is not None:
            return build(params, head_dim, seed)
        kernel = self.hook("kernel")
        return lambda q, k, v, mask: kernel(q, k, v, mask, params=params)
