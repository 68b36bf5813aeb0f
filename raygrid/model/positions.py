"""Learned position tables of BERT-like encoders: drop them (RoPE runs) or stretch them (Longformer's copy).

Both act on `embeddings.position_embeddings` of HF's BERT family (BERT, RoBERTa, XLM-R, ELECTRA, …),
after the model is built or loaded: HF re-creates the table in every `from_pretrained` / `from_config`, so
call these again on every freshly built model, before creating the optimizer or loading a state dict.

- `disable_learned_positions`: swaps the table for `NoPositions` (adds zeros, owns no parameters), so a
  model run with `hf_bridge.implementation_name(params, rope=True)` sees positions only through RoPE.
  `config.max_position_embeddings` still bounds the input length (BERT's `position_ids` buffer).
- `extend_learned_positions`: Beltagy, Peters, Cohan 2020, "Longformer", §5, https://arxiv.org/abs/2004.05150
  — a longer table made of copies of the learned one (positions 512 … 1023 start again as 0 … 511).
  Attention to nearby tokens keeps its learned local position pattern; only the long range is new.
  RoBERTa-family tables are offset: rows 0 … padding_idx are reserved (positions start at
  padding_idx + 1), so those rows are kept once and only the rows after them are repeated.
"""
from __future__ import annotations

import torch
from torch import nn


class NoPositions(nn.Module):
    """Stands in for a learned position table: adds zeros and owns no parameters (positions come from RoPE)."""

    def __init__(self, embedding_dim: int, like: torch.Tensor):
        super().__init__()
        self.embedding_dim = embedding_dim
        # Empty, non-persistent: follows model.to(device / dtype), so the zeros match the other embeddings.
        self.register_buffer("anchor", torch.empty(0, dtype=like.dtype, device=like.device), persistent=False)

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        # A broadcast zero (stride 0): the right shape (B or 1, N, H) without allocating it.
        return self.anchor.new_zeros(()).expand(*position_ids.shape, self.embedding_dim)

    def extra_repr(self) -> str:
        return f"embedding_dim={self.embedding_dim}"


def disable_learned_positions(encoder: nn.Module) -> int:
    """Replace `embeddings.position_embeddings` by `NoPositions`; returns the parameters dropped (0 if done)."""
    embeddings, table = _position_table(encoder)
    if isinstance(table, NoPositions):
        return 0  # idempotent
    embeddings.position_embeddings = NoPositions(table.embedding_dim, table.weight)
    return table.weight.numel()


def position_offset(encoder: nn.Module) -> int:
    """Reserved rows before position 0: padding_idx + 1 for RoBERTa-family embeddings, else 0.

    0 also for encoders without a learned table (ModernBERT: rotary), so `max_position_embeddings` is their limit.
    """
    embeddings = getattr(getattr(encoder, "base_model", encoder), "embeddings", None)
    padding_idx = getattr(embeddings, "padding_idx", None)  # only RoBERTa-style embeddings carry it
    return 0 if padding_idx is None else padding_idx + 1


def extend_learned_positions(encoder: nn.Module, new_len: int) -> int:
    """Grow the position table to `new_len` rows by repeating the learned rows; returns the rows added.

    `new_len` counts rows like `config.max_position_embeddings` (RoBERTa: max tokens + position_offset).
    """
    embeddings, table = _position_table(encoder)
    if isinstance(table, NoPositions):
        raise ValueError("learned positions are disabled (RoPE): nothing to extend; set "
                         "config.max_position_embeddings before building the model instead")
    old_len = table.weight.shape[0]
    if new_len <= max(old_len, encoder.config.max_position_embeddings):
        return 0
    offset = position_offset(encoder)
    old = table.weight
    with torch.no_grad():
        weight = old.new_empty(new_len, old.shape[1])  # (new_len, H), same dtype / device
        weight[:offset] = old[:offset]  # reserved rows (RoBERTa: padding) kept once
        learned = old[offset:]  # (L, H): the positions the checkpoint learned
        for start in range(offset, new_len, learned.shape[0]):
            stop = min(start + learned.shape[0], new_len)
            weight[start:stop] = learned[: stop - start]
    # In place on the same module: its padding_idx, hooks and type stay; only the Parameter is new.
    table.weight = nn.Parameter(weight, requires_grad=old.requires_grad)
    table.num_embeddings = new_len
    _extend_buffers(embeddings, new_len)
    encoder.config.max_position_embeddings = new_len
    return new_len - old_len


def _extend_buffers(embeddings: nn.Module, new_len: int) -> None:
    """BERT's embeddings slice `position_ids` / `token_type_ids` (1, max_len) buffers by the input length."""
    position_ids = getattr(embeddings, "position_ids", None)
    if isinstance(position_ids, torch.Tensor):
        fresh = torch.arange(new_len, dtype=position_ids.dtype, device=position_ids.device)
        embeddings.position_ids = fresh.expand((1, -1))  # (1, new_len), as HF builds it
    token_type_ids = getattr(embeddings, "token_type_ids", None)
    if isinstance(token_type_ids, torch.Tensor):
        extra = token_type_ids.new_zeros(token_type_ids.shape[0], new_len - token_type_ids.shape[-1])
        embeddings.token_type_ids = torch.cat([token_type_ids, extra], dim=-1)  # (1, new_len), zeros appended


def _position_table(encoder: nn.Module) -> tuple[nn.Module, nn.Module]:
    """(embeddings, embeddings.position_embeddings) of a BERT-like encoder (or a task model around one)."""
    base = getattr(encoder, "base_model", encoder)
    embeddings = getattr(base, "embeddings", None)
    table = getattr(embeddings, "position_embeddings", None)
    if not isinstance(table, (nn.Embedding, NoPositions)):
        model_type = getattr(getattr(encoder, "config", None), "model_type", type(encoder).__name__)
        raise ValueError(f"{model_type!r} has no learned position table (embeddings.position_embeddings); "
                         "only BERT-like encoders are supported")
    return embeddings, table
