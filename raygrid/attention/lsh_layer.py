"""LSH attention inside a transformers encoder: the AttentionInterface adapter and per-layer state.

Hashing: in eval every call hashes with rotations from (seed, layer), fixed. In training, rotations
come from (seed, layer, forward count): the model's forward clock (raygrid.attention.hf_bridge keeps
it for records with `counts_forwards`) ticks once per top-level training forward, so every training
forward hashes afresh (as Reformer), deterministically given the seed, and a layer that gradient
checkpointing re-runs during backward hashes exactly as in its forward. With checkpointing, call
backward before the next training forward of the same model (the recompute reads the current count).

qk: shared: `attach_hashing` ties each layer's key projection to its query projection
(raygrid.attention.qk_tying), so q = k and the kernel reads q for both (Reformer's and the study's rule);
exported weights hold the tied key projection as a copy (`export_state_dict`, the record's export hook).
"""
from __future__ import annotations

import torch

from raygrid.attention.layer_state import derive_seed, key_padding_mask, layer_params
from raygrid.attention.lsh import lsh_attention
from raygrid.attention.lsh_fused import allow_flex_recompiles
from raygrid.attention.qk_tying import export_state_dict, tie_query_key
from raygrid.attention.variants.lsh import LshParams, for_max_len

__all__ = ["allow_flex_recompiles", "attach_hashing", "export_state_dict", "lsh_forward", "standalone"]


def lsh_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """AttentionInterface adapter for LSH: rotations per training forward, fixed ones in eval."""
    params = layer_params(module, "raygrid_forward_clock")
    if params.qk == "shared" and not getattr(module, "raygrid_qk_tied", False):
        raise RuntimeError(f"{type(module).__name__}: LSH qk: shared needs tied projections (attach_attention_state)")
    mask = key_padding_mask(attention_mask, key.shape[-2])
    # Training: a new hash every forward (as in Reformer), a pure function of (seed, layer, forward count),
    # so a checkpointed layer re-run in backward hashes the same. Eval: fixed, independent of training.
    seed = module.raygrid_lsh_seed
    if module.training:
        seed = derive_seed(module.raygrid_seed, module.raygrid_layer, module.raygrid_forward_clock.count, "lsh-train")
    generator = torch.Generator().manual_seed(seed)
    out = lsh_attention(query, key, value, mask, params=params, generator=generator, scaling=scaling, dropout_p=dropout)
    return out.transpose(1, 2), None  # (B, N, H, D)


def attach_hashing(module, params: LshParams, seed: int, layer: int) -> None:
    """The layer's eval hash seed; for qk: shared, its key projection becomes its query projection."""
    module.raygrid_lsh_seed = derive_seed(seed, layer, 0)
    if params.qk == "shared":
        tie_query_key(module)


def standalone(params: LshParams, head_dim: int, seed: int = 0):
    """fn(q, k, v, key_padding_mask) hashing with one generator seeded by `seed` (bench).

    num_buckets: max_len counts the input's length as max_len (a bench input is one padded batch).
    """
    generator = torch.Generator().manual_seed(seed)
    return lambda q, k, v, m: lsh_attention(q, k, v, m, params=for_max_len(params, q.shape[-2]), generator=generator)
