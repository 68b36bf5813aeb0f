"""The model and objective of one cell, from its config and tokenized data (framework-free).

Shared by the Ray Train worker (raygrid.orchestration.trial) and the bare loop of `raygrid bench loop`, so
both train exactly the same thing.
"""
from __future__ import annotations

from raygrid.spec.config import CellConfig
from raygrid.data.cache import PreparedData
from raygrid.model.encoder import build_classifier, build_masked_lm
from raygrid.training.objectives import Classification, MaskedLanguageModel


def build_cell_model(cfg: CellConfig, data: PreparedData, location: str | None = None, rank: int = 0):
    """(model, objective) for a finetune or mlm cell; `location` overrides the checkpoint (chained stages)."""
    mlm = cfg.kind == "mlm"
    model = build_masked_lm(cfg, location) if mlm else build_classifier(cfg, data.num_labels, location)
    return model, (masked_lm_objective(cfg, data, model, rank) if mlm else Classification(data.num_labels))


def masked_lm_objective(cfg: CellConfig, data: PreparedData, model, rank: int) -> MaskedLanguageModel:
    meta = data.meta
    # A tokenizer with added tokens may count more ids than the model's embedding rows.
    vocab = min(meta["vocab_size"], model.lm.config.vocab_size)
    return MaskedLanguageModel(cfg.mlm, meta["mask_token_id"], vocab, meta["special_ids"], cfg.seed, rank=rank,
                               eval_seed=cfg.data.split_seed)
