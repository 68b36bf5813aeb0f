"""Scores and resource figures every cell reports (numpy/torch/scikit-learn, no tracking library)."""
from __future__ import annotations

import resource
import sys

import numpy as np
import torch
from sklearn.metrics import f1_score


def f1_macro(preds: np.ndarray, labels: np.ndarray, num_labels: int) -> float:
    """scikit-learn's F1-macro over the fixed label set 0..num_labels-1.

    Why fixed: the mean is then always over the task's classes, so scores of different splits and
    cells average the same classes. A class absent from a (small) split and never predicted scores 0
    (zero_division=0, no warning) and still counts; scikit-learn's default label set (the classes
    seen in labels or predictions) would drop it from the mean and score such a split higher.
    """
    if len(labels) == 0:
        return 0.0  # an empty split scores nothing; scikit-learn would raise
    return float(f1_score(np.asarray(labels), np.asarray(preds), labels=np.arange(num_labels), average="macro",
                          zero_division=0))


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
