"""LSH qk: shared (Reformer's Q = K): each layer's key projection becomes its query projection.

The tie is made on the loaded model (hf_bridge.attach_attention_state), so a checkpoint's key
weights are replaced by its query weights: the config refuses that for pretrained checkpoints.
Optimizers see one parameter (named_parameters drops the duplicate), DDP syncs it once. Exported
weights hold both names as equal copies (safetensors refuses shared tensors HF did not declare);
loading them and attaching again ties them again, so the weight fingerprint chains across stages.
"""
from __future__ import annotations

import torch
from torch import nn

QK_PAIRS = (("query", "key"), ("q_proj", "k_proj"), ("q_lin", "k_lin"))  # per model family


def tie_query_key(module: nn.Module) -> None:
    """Make the key projection BE the query projection (the same Parameters); a fused Wqkv is refused."""
    for query_name, key_name in QK_PAIRS:
        query, key = getattr(module, query_name, None), getattr(module, key_name, None)
        if isinstance(query, nn.Linear) and isinstance(key, nn.Linear):
            key.weight = query.weight
            key.bias = query.bias
            module.raygrid_qk_tied = key_name  # which child export_state_dict must copy
            return
    raise ValueError(f"attention.qk: shared ties the key projection to the query projection, but "
                     f"{type(module).__name__} has no separate ones (fused Wqkv?): use qk: separate")


def export_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """model.state_dict() with each tied key projection as a copy, for save_pretrained."""
    state = model.state_dict()
    for prefix, module in model.named_modules():
        key_name = getattr(module, "raygrid_qk_tied", None)
        for part in ("weight", "bias") if key_name else ():
            name = ".".join(filter(None, (prefix, key_name, part)))
            if state.get(name) is not None:
                state[name] = state[name].clone()
    return state
