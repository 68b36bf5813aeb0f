"""A cell's attention variant bound to its validated params, once, when its model is built.

    attention = bind(cfg.attention, cfg.seed, max_len=cfg.data.max_len, rope_base=None)
    model = AutoModel.from_config(config, attn_implementation=attention.implementation)
    attention.attach(model)                 per-layer state on the model's attention modules
    attention.on_step                       None, or fn(step) after each optimizer step (FAVOR+ redraws)
    attention.checkpoint_state()            {"attention_forwards": n}, saved with the training state
    attention.load_checkpoint_state(state)  resume the counters (older checkpoints' `lsh_step` too)

The object asks its record (raygrid.attention.record) every question once, here, so the training loop,
the model and the exporter ask it instead of branching on a kind or walking modules for attributes.
It deep-copies with its model (a copy ticks and redraws its own layers) and pickles by its record's kind
(records hold lambdas). `attach` sets what the transformers adapters read on each layer (raygrid.attention.hf_bridge).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from raygrid.attention.hf_bridge import PREFIX, ROPE_PREFIX, attention_modules, record_implementation
from raygrid.attention.layer_state import ForwardClock
from raygrid.attention.record import Variant
from raygrid.attention.registry import get, validated, variant_of

# Checkpoint key of the training forwards the layers counted; `lsh_step` is its name in older checkpoints.
FORWARDS_KEY, OLD_FORWARDS_KEYS = "attention_forwards", ("lsh_step",)


def bind(params, seed: int, *, max_len: int | None = None, rope_base: float | None = None) -> "BoundAttention":
    """`params` validated, settings that follow `data.max_len` fixed (LSH num_buckets: max_len), with `seed`."""
    params = validated(params)
    record = variant_of(params)
    if record.for_max_len is not None:
        params = record.for_max_len(params, max_len)
    implementation = record_implementation(record, params, rope=rope_base is not None)
    return BoundAttention(record, params, seed, implementation, None if rope_base is None else float(rope_base))


def attach_attention_state(model: nn.Module, params, seed: int, rope_base: float | None = None,
                           max_len: int | None = None) -> "BoundAttention":
    """bind(...).attach(model): for a model built with `implementation_name(params, rope=rope_base is not None)`."""
    return bind(params, seed, max_len=max_len, rope_base=rope_base).attach(model)


@dataclass
class BoundAttention:
    record: Variant
    params: Any  # the params the layers run with
    seed: int
    implementation: str  # the `attn_implementation` the model must be built with
    rope_base: float | None = None
    layers: list[nn.Module] = field(default_factory=list, repr=False)  # set by attach
    clock: ForwardClock | None = field(default=None, repr=False)  # training forwards, if the record counts them

    def __getstate__(self) -> dict:
        return {**self.__dict__, "record": self.record.kind}  # records hold lambdas: pickle the kind

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, record=get(state["record"]))

    def attach(self, model: nn.Module, saved: dict[str, torch.Tensor] | None = None) -> "BoundAttention":
        """Per-layer state on every attention module of `model` (an HF model), then the buffers `saved` by an
        earlier stage (see restore_layer_state); returns self."""
        layers = attention_modules(model)
        if not layers:
            raise ValueError(f"no attention modules found in {type(model).__name__}")
        self._check_model(model)
        record, self.layers = self.record, layers
        attach = record.hook("attach")
        self.clock = ForwardClock() if record.counts_forwards else None
        for layer, module in enumerate(layers):
            module.raygrid_attention_params, module.raygrid_seed, module.raygrid_layer = self.params, self.seed, layer
            if self.rope_base is not None:
                module.raygrid_rope_base = self.rope_base
            elif hasattr(module, "raygrid_rope_base"):
                del module.raygrid_rope_base
            if attach is not None:
                attach(module, self.params, self.seed, layer)
            if self.clock is not None:
                module.raygrid_forward_clock = self.clock
        _replace_clock_hook(model, self.clock)
        if saved:
            self.restore_layer_state(saved)
        return self

    def _check_model(self, model: nn.Module) -> None:
        """The model must run this implementation (rotary iff rope_base) where it runs one of raygrid's."""
        rope_base = self.rope_base
        if rope_base is not None and not rope_base > 0:
            raise ValueError(f"rope_base must be positive, got {rope_base}")
        implementation = getattr(getattr(model, "config", None), "_attn_implementation", None)
        if implementation is None:  # not an HF model (e.g. a wrapper): nothing to compare against
            return
        uses_rope = implementation.startswith(ROPE_PREFIX)
        if uses_rope and rope_base is None:
            raise ValueError(f"{implementation} applies rotary positions: pass rope_base (e.g. 10000.0)")
        if rope_base is not None and not uses_rope:
            raise ValueError(f"rope_base={rope_base} given but the model runs {implementation!r}, which ignores it: "
                             "build it with implementation_name(params, rope=True)")
        if implementation.startswith(PREFIX) and implementation != self.implementation:
            raise ValueError(f"the model runs {implementation} but the attention params need {self.implementation}")

    # --- training: redraws and counters ---------------------------------------------------------

    @property
    def on_step(self) -> Callable[[int], None] | None:
        """fn(step) for after optimizer step `step`, or None when these params never change state."""
        every = self.record.redraw_every(self.params) if self.record.redraw_every else 0
        return self._redraw if every > 0 else None

    def _redraw(self, step: int) -> bool:
        """The record's redraw hook on every layer, at the steps its schedule names, in training only."""
        every = self.record.redraw_every(self.params)
        if step <= 0 or step % every or not self.layers or not self.layers[0].training:
            return False
        redraw = self.record.hook("redraw")
        return any([redraw(module, self.params, step) for module in self.layers])

    @property
    def forward_count(self) -> int | None:
        """Training forwards the layers have counted (None when the variant counts none)."""
        return None if self.clock is None else self.clock.count

    def set_forward_count(self, forwards: int) -> None:
        """Resume after `forwards` training forwards (the next one counts as forward `forwards + 1` did)."""
        if forwards < 0:
            raise ValueError(f"forwards must be >= 0, got {forwards}")
        if self.clock is not None:
            self.clock.count = forwards

    def checkpoint_state(self) -> dict:
        """What a training checkpoint must hold to resume the layers exactly."""
        return {FORWARDS_KEY: self.forward_count}

    def load_checkpoint_state(self, state: dict) -> None:
        """Resume from `checkpoint_state()` as saved (or a checkpoint from before it, under its old key)."""
        forwards = next((state[key] for key in (FORWARDS_KEY, *OLD_FORWARDS_KEYS) if key in state), None)
        if forwards is not None:  # e.g. LSH hashes continue from the same forward count
            self.set_forward_count(forwards)

    # --- exported weights -----------------------------------------------------------------------

    def layer_state_tensors(self) -> dict[str, torch.Tensor]:
        """`{layer}.{buffer}` -> tensor (CPU) of every state buffer the record names, for exported weights."""
        return {f"{layer}.{name}": getattr(module, name).detach().cpu() for layer, module in enumerate(self.layers)
                for name in self.record.state_buffers if hasattr(module, name)}

    def restore_layer_state(self, saved: dict[str, torch.Tensor]) -> int:
        """Copy saved buffers into layers holding the same buffer with the same shape; returns how many.

        Layers whose variant or shape differs keep their own (e.g. a FAVOR+ stage followed by softmax).
        """
        restored = 0
        for layer, module in enumerate(self.layers):
            for name in self.record.state_buffers:
                tensor, own = saved.get(f"{layer}.{name}"), getattr(module, name, None)
                if tensor is not None and own is not None and own.shape == tensor.shape:
                    own.copy_(tensor)
                    restored += 1
        return restored

    def export_state_dict(self, hf_model: nn.Module) -> dict[str, torch.Tensor]:
        """hf_model's state dict as `save_pretrained` must write it (LSH qk: shared: tied weights as copies)."""
        export = self.record.hook("export_state")
        return hf_model.state_dict() if export is None else export(hf_model)


def _replace_clock_hook(model: nn.Module, clock: ForwardClock | None) -> None:
    """One forward pre-hook ticking `clock` per top-level training forward (an earlier attach's goes)."""
    for key, hook in list(model._forward_pre_hooks.items()):
        if isinstance(getattr(hook, "__self__", None), ForwardClock):
            del model._forward_pre_hooks[key]
    if clock is not None:
        model.register_forward_pre_hook(clock.tick)  # a bound method: deep copies tick their own clock
