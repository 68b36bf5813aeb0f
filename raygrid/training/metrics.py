"""Scores and resource figures every cell reports (plain numpy/torch, no tracking library)."""
from __future__ import annotations

import resource
import sys

import numpy as np
import torch


def confusion(preds: np.ndarray, labels: np.ndarray, num_labels: int) -> np.ndarray:
    """(true, predicted) counts, shape (C, C)."""
    matrix = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(matrix, (labels, preds), 1)
    return matrix


def f1_macro(preds: np.ndarray, labels: np.ndarray, num_labels: int) -> float:
    """Unweighted mean of per-class F1; a class never predicted nor present scores 0 (sklearn's default)."""
    matrix = confusion(preds, labels, num_labels)
    tp = np.diag(matrix).astype(float)
    denom = matrix.sum(0) + matrix.sum(1)  # predicted + actual = 2tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(f1.mean())


def accuracy(preds: np.ndarray, labels: np.ndarray) -> float:
    return float((preds == labels).mean()) if len(labels) else 0.0


def peak_host_mem_mb() -> float:
    """Peak resident memory of this process (the Train worker), in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def peak_gpu_mem_mb(device: torch.device) -> float:
    """torch's peak allocated memory on `device` since the last reset, in MiB; 0 on CPU."""
    if device.type != "cuda":
        return 0.0
    return torch.cuda.max_memory_allocated(device) / 2**20
