"""What a cell optimises and how it is scored: classification (fine-tuning) or masked-language modelling.

The training loop (raygrid.training.train_loop) is the same for both; an objective supplies the loss of a
batch, the evaluation of a split, the names of the per-epoch metrics and how the best epoch is
chosen. Pure torch: no Ray, no tracking.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import nn

from raygrid.spec.config import MlmConfig
from raygrid.training.metrics import accuracy, f1_macro
from raygrid.training.precision import autocast  # noqa: F401 (also imported from here by callers)

Batch = dict[str, torch.Tensor]


class Classification:
    """Cross-entropy on document labels; the best epoch has the highest validation F1-macro; test is scored."""

    metric_prefix = "val_"  # per-epoch metrics: val_f1_macro, val_accuracy
    scores_test = True  # on the best-on-validation weights (the study's protocol), which are kept

    def __init__(self, num_labels: int):
        self.num_labels = num_labels

    def score(self, val: dict) -> float:
        """How good an epoch's validation metrics are (higher is better): F1-macro."""
        return val["f1_macro"]

    def start_epoch(self, epoch: int, device: torch.device) -> None:
        pass

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        logits = model(batch["input_ids"], batch["attention_mask"])
        return nn.functional.cross_entropy(logits.float(), batch["labels"])

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches, device: torch.device, precision: str) -> dict:
        """Loss, F1-macro and accuracy over all batches, at `precision` (what the cell runs at: fp32 on CPU)."""
        model.eval()
        preds, labels, loss_sum = [], [], 0.0
        for batch in batches:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            with autocast(device, precision):
                logits = model(batch["input_ids"], batch["attention_mask"]).float()
            loss_sum += nn.functional.cross_entropy(logits, batch["labels"], reduction="sum").item()
            preds.append(logits.argmax(-1).cpu().numpy())
            labels.append(batch["labels"].cpu().numpy())
        p, y = np.concatenate(preds), np.concatenate(labels)
        return {"loss": loss_sum / max(1, len(y)), "f1_macro": f1_macro(p, y, self.num_labels),
                "accuracy": accuracy(p, y)}


class MaskedLanguageModel:
    """BERT's MLM: predict `mask_prob` of the real, non-special tokens, corrupted 80/10/10.

    Training masks are drawn anew every epoch (dynamic masking, as RoBERTa) from a generator seeded
    by (cell seed, epoch, worker rank): a resumed cell sees the same masks, and data-parallel
    workers never mask alike. Validation masks depend only on `eval_seed` (the data's split seed)
    and the evaluation batches, so validation loss is comparable across epochs and across cells
    (with the same eval batch size). The best epoch has the lowest validation loss (without a
    validation split: the last epoch); the weights passed on are the final ones (pretraining).
    """

    metric_prefix = "val_mlm_"  # per-epoch metrics: val_mlm_accuracy, val_mlm_perplexity
    scores_test = False  # no test split; the final weights are passed on

    def __init__(self, cfg: MlmConfig, mask_token_id: int, vocab_size: int, special_ids: list[int], seed: int,
                 rank: int = 0, eval_seed: int = 0):
        self.cfg, self.mask_token_id, self.vocab_size = cfg, mask_token_id, vocab_size
        self.seed, self.rank, self.eval_seed = seed, rank, eval_seed
        self.special_ids = torch.as_tensor(special_ids, dtype=torch.long)
        self.generator: torch.Generator | None = None

    def score(self, val: dict) -> float:
        """How good an epoch's validation metrics are (higher is better): minus the loss."""
        return -val["loss"]

    def start_epoch(self, epoch: int, device: torch.device) -> None:
        self.generator = torch.Generator(device=device).manual_seed(_derive(self.seed, epoch, self.rank))

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        input_ids, labels = mask_tokens(batch["input_ids"], batch["attention_mask"], self, self.generator)
        logits, targets = model(input_ids, batch["attention_mask"], labels)
        # 0 * sum keeps the graph (and DDP's gradient hooks) when a batch happens to select nothing.
        return nn.functional.cross_entropy(logits.float(), targets) if len(targets) else logits.sum() * 0.0

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches, device: torch.device, precision: str) -> dict:
        """Mean cross-entropy and accuracy over the predicted tokens, with fixed masks."""
        model.eval()
        generator = torch.Generator(device=device).manual_seed(_derive(self.eval_seed, -1, 0))
        loss_sum, correct, count = 0.0, 0, 0
        for batch in batches:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            input_ids, labels = mask_tokens(batch["input_ids"], batch["attention_mask"], self, generator)
            with autocast(device, precision):
                logits, targets = model(input_ids, batch["attention_mask"], labels)
            logits = logits.float()
            loss_sum += nn.functional.cross_entropy(logits, targets, reduction="sum").item()
            correct += int((logits.argmax(-1) == targets).sum())
            count += len(targets)
        if count == 0:  # a loss of 0 would read as a perfect model
            raise ValueError("data: the MLM validation split predicts no token (empty, or too short to mask)")
        loss = loss_sum / count
        return {"loss": loss, "accuracy": correct / count, "perplexity": float(np.exp(min(loss, 50.0)))}


def mask_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor, objective: MaskedLanguageModel,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(corrupted input_ids, labels): labels hold the original id at predicted positions, -100 elsewhere."""
    cfg = objective.cfg
    special = objective.special_ids.to(input_ids.device)
    candidates = attention_mask.bool() & ~torch.isin(input_ids, special)
    selected = candidates & (_uniform(input_ids, generator) < cfg.mask_prob)
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, -100))
    draw = _uniform(input_ids, generator)
    to_mask = selected & (draw < cfg.replace_mask)
    to_random = selected & (draw >= cfg.replace_mask) & (draw < cfg.replace_mask + cfg.replace_random)
    random_ids = torch.randint(objective.vocab_size, input_ids.shape, generator=generator, device=input_ids.device)
    corrupted = torch.where(to_mask, torch.full_like(input_ids, objective.mask_token_id), input_ids)
    corrupted = torch.where(to_random, random_ids, corrupted)
    return corrupted, labels


def _derive(seed: int, epoch: int, rank: int) -> int:
    """A 63-bit generator seed unique to (seed, epoch, rank), stable across runs and platforms."""
    digest = hashlib.sha256(f"raygrid-mlm:{seed}:{epoch}:{rank}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _uniform(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(like.shape, generator=generator, device=like.device)
