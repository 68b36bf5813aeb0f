"""Encoder + classification head, with the study's fine-tuning knobs: pooling, N_freeze, P_drop.

The encoder is any HF encoder (pretrained from a folder / pkg:// / hub id, or the same config
randomly initialised). The attention variant is chosen by name through transformers'
AttentionInterface (raygrid.attention.hf_bridge), so no encoder code is copied per variant; the cell's
variant is bound to its params once (raygrid.attention.bound) and the model carries it as `attention`,
which the training loop and the exporter ask about redraws, counters and state.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from raygrid.attention.bound import BoundAttention, bind
from raygrid.spec.config import CellConfig
from raygrid.spec.dotted import get_path
from raygrid.spec.paths import resolve_location
from raygrid.model.positions import disable_learned_positions, extend_learned_positions, position_offset


def cls_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The first token's vector ([CLS]): (B, L, H) -> (B, H)."""
    return hidden[:, 0]


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens only, so padding never changes the result: (B, L, H) -> (B, H)."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)  # (B, L, 1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)


POOLERS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {"cls": cls_pool, "mean": mean_pool}


class Classifier(nn.Module):
    """encoder -> pooling -> [pooler: Dense(H, H) + tanh] -> dropout(P_drop) -> linear.

    `head` (model.head): linear = dropout -> Linear with torch's default init; pooler = the study's
    head (BERT's pooler before the classifier), Xavier-uniform weights and zero biases. The pooler
    is always new, seeded by the cell: a checkpoint's own pooler (BERT's, trained for next-sentence
    prediction on [CLS]) is not loaded, so `cls` and `mean` pooling get the same head and the study's
    from-scratch models (which never had one) and pretrained checkpoints follow one rule.
    """

    def __init__(self, encoder: nn.Module, attention: BoundAttention, num_labels: int, pooling: str, p_drop: float,
                 head: str = "linear"):
        super().__init__()
        hidden = encoder.config.hidden_size
        self.encoder = encoder
        self.attention = attention  # the encoder's attention variant, bound to its params (load_pretrained)
        self.pool = POOLERS[pooling]
        self.pooler = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh()) if head == "pooler" else nn.Identity()
        self.dropout = nn.Dropout(p_drop)
        self.head = nn.Linear(hidden, num_labels)
        if head == "pooler":
            for layer in (self.pooler[0], self.head):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, L, H)
        pooled = self.pooler(self.pool(hidden, attention_mask))  # (B, H)
        return self.head(self.dropout(pooled))  # (B, C)


def build_classifier(cfg: CellConfig, num_labels: int, location: str | None = None) -> Classifier:
    """The cell's model, with its attention variant plugged in and its state seeded by cfg.seed.

    `location` replaces `cfg.model.checkpoint` (e.g. the local copy of an earlier stage's weights).
    """
    torch.manual_seed(cfg.seed)  # head init (and scratch encoders) depend on the cell's seed only
    from transformers import AutoModel

    encoder, attention = load_pretrained(cfg, AutoModel, location)
    return Classifier(encoder, attention, num_labels, cfg.model.pooling, cfg.model.p_drop, cfg.model.head)


class MaskedLM(nn.Module):
    """An HF *ForMaskedLM model whose vocabulary head runs only on the positions being predicted.

    Scoring every position would materialise (B, L, vocab) logits: 2 GB at 64 x 512 x 30k in bf16.
    `encoder` is the base model (the part later stages keep), so N_freeze and the attention state
    work exactly as for the classifier.
    """

    def __init__(self, lm: nn.Module, attention: BoundAttention):
        super().__init__()
        self.lm = lm
        self._head = mlm_head(lm)
        self.attention = attention  # as Classifier.attention

    @property
    def encoder(self) -> nn.Module:
        return self.lm.base_model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor):
        """-> (logits (M, V), targets (M,)) for the M positions whose label is not -100."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, L, H)
        picked = labels != -100
        return self._head(hidden[picked]), labels[picked]


def mlm_head(lm: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The module mapping hidden states (..., H) to vocabulary logits, per model family."""
    if hasattr(lm, "cls"):  # BERT family: transform + tied decoder
        return lm.cls
    if hasattr(lm, "lm_head"):  # RoBERTa family
        return lm.lm_head
    if hasattr(lm, "head") and hasattr(lm, "decoder"):  # ModernBERT
        return lambda hidden: lm.decoder(lm.head(hidden))
    raise ValueError(f"model.checkpoint: no masked-LM head found on {type(lm).__name__}")


def build_masked_lm(cfg: CellConfig, location: str | None = None) -> MaskedLM:
    """Encoder + MLM head for an `mlm` cell (a checkpoint without a head gets a fresh one, tied to the embeddings)."""
    torch.manual_seed(cfg.seed)
    from transformers import AutoModelForMaskedLM

    return MaskedLM(*load_pretrained(cfg, AutoModelForMaskedLM, location))


def load_pretrained(cfg: CellConfig, auto_class, location: str | None = None) -> tuple[nn.Module, BoundAttention]:
    """Load (or initialise) `auto_class` for the cell: attention variant, positions, checkpointing.

    Order matters: the cell's attention is bound to its params first (HF builds the model with its
    implementation's name), its per-layer state attached to the new model and, if an earlier stage saved
    some (FAVOR+ projections), restored; then positions are switched off (rope) or extended (learned).
    """
    from transformers import AutoConfig, AutoModel

    model_cfg = cfg.model
    folder = resolve_location(location or model_cfg.checkpoint)
    config = AutoConfig.from_pretrained(folder, **model_cfg.config_overrides)
    rope = model_cfg.positions == "rope"
    if rope and hasattr(config, "max_position_embeddings"):
        # The learned table is switched off, but BERT still slices its position_ids buffer to the input length.
        config.max_position_embeddings = max(config.max_position_embeddings, cfg.data.max_len)
    rope_base = model_cfg.rope_base if rope else None
    attention = bind(cfg.attention, cfg.seed, max_len=cfg.data.max_len, rope_base=rope_base)
    if model_cfg.from_scratch:
        model = auto_class.from_config(config, attn_implementation=attention.implementation)
    else:
        # add_pooling_layer=False: BERT's pretrained tanh pooler is unused (model.head: pooler makes a new one).
        kwargs = {"add_pooling_layer": False} if auto_class is AutoModel and config.model_type in _BERT_LIKE else {}
        model = auto_class.from_pretrained(folder, config=config, attn_implementation=attention.implementation,
                                           **kwargs)
    base = model.base_model
    attention.attach(base, saved_attention_state(folder))
    if rope:
        disable_learned_positions(base)
    else:
        if model_cfg.extend_positions:
            # Table rows, not tokens: RoBERTa-family tables reserve their first rows (padding_idx + 1).
            extend_learned_positions(base, cfg.data.max_len + position_offset(base))
        check_max_len(base, cfg.data.max_len)
    if model_cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model, attention


_BERT_LIKE = ("bert", "roberta", "xlm-roberta", "electra")
ATTENTION_STATE_FILE = "raygrid_attention.pt"


def check_max_len(encoder: nn.Module, max_len: int) -> None:
    """Refuse `data.max_len` beyond the positions the encoder learned (rows after the reserved ones)."""
    rows = getattr(encoder.config, "max_position_embeddings", None)
    limit = None if rows is None else rows - position_offset(encoder)
    if limit is not None and max_len > limit:
        raise ValueError(f"data.max_len: {max_len} exceeds the checkpoint's {limit} learned positions; "
                         f"set model.extend_positions: true to copy the learned table (Longformer's recipe)")


def saved_attention_state(folder: str) -> dict[str, torch.Tensor] | None:
    """Per-layer attention state an earlier stage exported with its weights (FAVOR+ projections), or None.

    A stage trained with fixed (never redrawn) features learned weights for exactly those features,
    so the next stage must keep them (BoundAttention.attach restores them where variant and shape match).
    """
    path = Path(folder) / ATTENTION_STATE_FILE
    return torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None


def export_pretrained(model: nn.Module, folder: Path, tokenizer_location: str) -> Path:
    """Write an HF folder later stages (and anyone with transformers) can load: weights, config, tokenizer.

    Per-layer attention state (FAVOR+ projections) goes to a side file: HF would drop it as unexpected keys.
    """
    from raygrid.data.cache import load_tokenizer

    core = getattr(model, "module", model)
    hf_model = core.lm if isinstance(core, MaskedLM) else core.encoder
    folder.mkdir(parents=True, exist_ok=True)
    hf_model.save_pretrained(folder, state_dict=core.attention.export_state_dict(hf_model))  # e.g. LSH Q = K ties
    load_tokenizer(tokenizer_location).save_pretrained(folder)
    state = core.attention.layer_state_tensors()
    if state:
        torch.save(state, folder / ATTENTION_STATE_FILE)
    return folder


def weights_fingerprint(encoder: nn.Module) -> str:
    """Hash of the encoder's trained weights (not buffers): proves which weights a stage started from."""
    digest = hashlib.sha256()
    for name, param in sorted(encoder.named_parameters()):
        digest.update(name.encode())
        digest.update(param.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


# --- N_freeze ---------------------------------------------------------------------------------

def encoder_blocks(encoder: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks (BERT: encoder.layer; ModernBERT-like: layers)."""
    for path in ("encoder.layer", "layers", "encoder.layers", "transformer.layer"):
        node = get_path(encoder, path)
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
