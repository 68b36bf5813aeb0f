"""Encoder + classification head, with the study's fine-tuning knobs: pooling, N_freeze, P_drop.

The encoder is any HF encoder (pretrained from a folder / pkg:// / hub id, or the same config
randomly initialised). The attention variant is chosen by name through transformers'
AttentionInterface (raygrid.attention.hf_bridge), so no encoder code is copied per variant.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from raygrid.config import CellConfig, ModelConfig
from raygrid.paths import resolve_location


def cls_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The first token's vector ([CLS]): (B, L, H) -> (B, H)."""
    return hidden[:, 0]


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens only, so padding never changes the result: (B, L, H) -> (B, H)."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)  # (B, L, 1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)


POOLERS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {"cls": cls_pool, "mean": mean_pool}


class Classifier(nn.Module):
    """encoder -> pooling -> dropout(P_drop) -> linear."""

    def __init__(self, encoder: nn.Module, num_labels: int, pooling: str, p_drop: float):
        super().__init__()
        self.encoder = encoder
        self.pool = POOLERS[pooling]
        self.dropout = nn.Dropout(p_drop)
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, L, H)
        return self.head(self.dropout(self.pool(hidden, attention_mask)))  # (B, C)


def build_classifier(cfg: CellConfig, num_labels: int) -> Classifier:
    """The cell's model, with its attention variant plugged in and its state seeded by cfg.seed."""
    from raygrid.attention import hf_bridge

    torch.manual_seed(cfg.seed)  # head init (and scratch encoders) depend on the cell's seed only
    encoder = load_encoder(cfg.model, hf_bridge.implementation_name(cfg.attention))
    hf_bridge.attach_attention_state(encoder, cfg.attention, cfg.seed)
    check_max_len(encoder, cfg.data.max_len)
    return Classifier(encoder, num_labels, cfg.model.pooling, cfg.model.p_drop)


def load_encoder(cfg: ModelConfig, attn_implementation: str) -> nn.Module:
    from transformers import AutoConfig, AutoModel  # late import: `raygrid plan` stays light

    location = resolve_location(cfg.checkpoint)
    if cfg.from_scratch:
        config = AutoConfig.from_pretrained(location)
        return AutoModel.from_config(config, attn_implementation=attn_implementation)
    # add_pooling_layer=False: BERT's pretrained tanh pooler is unused by our heads.
    kwargs = {"add_pooling_layer": False} if _is_bert_like(location) else {}
    return AutoModel.from_pretrained(location, attn_implementation=attn_implementation, **kwargs)


def _is_bert_like(location: str) -> bool:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(location).model_type in ("bert", "roberta", "xlm-roberta", "electra")


def check_max_len(encoder: nn.Module, max_len: int) -> None:
    limit = getattr(encoder.config, "max_position_embeddings", None)
    if limit is not None and max_len > limit:
        raise ValueError(f"data.max_len: {max_len} exceeds the checkpoint's max_position_embeddings ({limit})")


# --- N_freeze ---------------------------------------------------------------------------------

def encoder_blocks(encoder: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks (BERT: encoder.layer; ModernBERT-like: layers)."""
    for path in ("encoder.layer", "layers", "encoder.layers", "transformer.layer"):
        node = encoder
        for part in path.split("."):
            node = getattr(node, part, None)
        if isinstance(node, nn.ModuleList):
            return node
    raise ValueError(f"model.n_freeze: cannot find the block stack of {type(encoder).__name__}")


def set_bottom_frozen(model: Classifier, n_freeze: int, frozen: bool) -> None:
    """(Un)freeze the embeddings and the bottom `n_freeze` blocks."""
    if n_freeze == 0:
        return
    blocks = encoder_blocks(model.encoder)
    if n_freeze > len(blocks):
        raise ValueError(f"model.n_freeze: {n_freeze} exceeds the encoder's {len(blocks)} blocks")
    parts = [model.encoder.embeddings, *blocks[:n_freeze]]
    for part in parts:
        for param in part.parameters():
            param.requires_grad_(not frozen)


def frozen_epochs(n_freeze: int, epochs: int) -> int:
    """Epochs (from the first) during which the bottom blocks stay frozen: floor(epochs/2), 0 if N=0."""
    return epochs // 2 if n_freeze > 0 else 0


def check_checkpoint(location: str) -> None:
    """Fail before any trial starts if a checkpoint's config cannot be read (bad path, no network)."""
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(resolve_location(location))
    except (OSError, ValueError) as err:
        raise ValueError(f"model.checkpoint: cannot load {location!r} ({str(err).splitlines()[0]})") from None
