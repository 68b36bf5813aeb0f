"""A cell's numeric precision on its device: fp32, bf16 autocast, or fp16 autocast with a GradScaler.

`optim.precision` names what a cell asks for; what runs depends on the device: on CUDA the
request, on CPU always fp32 (CPU autocast is slower there and only approximates). The cell's run
records what ran (tag raygrid.precision), so a CPU rehearsal of an fp16 grid does not pass for one.

fp16 follows the study's loop: the loss is scaled before backward, the gradients unscaled before
clipping, and an optimizer step whose gradients overflowed (inf/nan) is skipped by the scaler,
which halves its scale. A skipped step is not an update: raygrid.training.train_loop then leaves
the LR schedule where it was (the study's rule), so warm-up and decay count applied updates only.
"""
from __future__ import annotations

import torch

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def effective_precision(requested: str, device: torch.device) -> str:
    """The precision a cell runs at on `device`: the request on CUDA, fp32 elsewhere."""
    if device.type != "cuda":
        return "fp32"
    if requested == "bf16" and not torch.cuda.is_bf16_supported():
        raise ValueError("optim.precision: bf16 needs a GPU with bf16 support (Ampere or newer); use fp16 here")
    return requested


def autocast(device: torch.device, precision: str | bool):
    """Autocast at `precision` on CUDA; a no-op context on CPU and for fp32.

    A bool is the older `mixed_precision` flag: True = bf16, False = fp32.
    """
    if isinstance(precision, bool):
        precision = "bf16" if precision else "fp32"
    dtype = _DTYPES.get(precision)
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None and device.type == "cuda")


class Precision:
    """Autocast, backward and the optimizer step of one cell at one precision (`name`: what runs).

    Build it with `for_device`; constructing it directly with "fp16" on CPU gives a working
    GradScaler there (the unit tests exercise the skip rule that way).
    """

    def __init__(self, name: str, device: torch.device):
        self.name, self.device = name, device
        self.scaler = torch.amp.GradScaler(device.type, enabled=name == "fp16")

    @classmethod
    def for_device(cls, requested: str, device: torch.device) -> "Precision":
        return cls(effective_precision(requested, device), device)

    def autocast(self):
        return autocast(self.device, self.name)

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()  # unscaled when the scaler is off

    def step(self, params: list[torch.nn.Parameter], optimizer: torch.optim.Optimizer, clip_norm: float) -> bool:
        """Clip the (unscaled) gradients to `clip_norm` and step; False when fp16's scaler skipped the step."""
        self.scaler.unscale_(optimizer)  # the clip sees true gradient norms (a no-op without scaler)
        torch.nn.utils.clip_grad_norm_(params, clip_norm)
        if not self.scaler.is_enabled():
            optimizer.step()
            return True
        # The scaler lowers its scale exactly when it found inf/nan and skipped the step. Reading the
        # scale is one host synchronisation per optimizer step (fp16 only; the study's loop synced per batch).
        scale = self.scaler.get_scale()
        self.scaler.step(optimizer)
        self.scaler.update()
        return self.scaler.get_scale() >= scale

    def state_dict(self) -> dict:
        """The scaler's state (scale, growth tracker) for checkpoints; {} without scaler."""
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict | None) -> None:
        if state:  # checkpoints from before fp16 (or from a bf16/fp32 cell) have none
            self.scaler.load_state_dict(state)
