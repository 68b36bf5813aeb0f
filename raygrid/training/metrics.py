"""Scores and resource figures every cell reports (numpy/torch, no tracking library)."""
from __future__ import annotations

import resource
import sys

import numpy as np
import torch


def f1_macro(preds: np.ndarray, labels: np.ndarray, num_labels: int) -> float:
    """F1-macro over the fixed label set 0..num_labels-1; equals scikit-learn's
    `f1_score(labels, preds, labels=range(num_labels), average="macro", zero_division=0)` (tested).

    Why fixed: the mean is then always over the task's classes, so scores of different splits and
    cells average the same classes. A class absent from a (small) split and never predicted scores 0
    and still counts; scikit-learn's default label set (the classes seen in labels or predictions)
    would drop it from the mean and score such a split higher.
    Why not scikit-learn itself: importing sklearn.metrics (it pulls in scipy.stats) costs ~1.5 s of
    CPU in every Tune trial and Train worker process, on the path of every trial's start.
    """
    if len(labels) == 0:
        return 0.0  # an empty split scores nothing; scikit-learn would raise
    labels, preds = np.asarray(labels, dtype=np.int64), np.asarray(preds, dtype=np.int64)
    confusion = np.bincount(labels * num_labels + preds, minlength=num_labels * num_labels)
    confusion = confusion.reshape(num_labels, num_labels)  # [true class, predicted class]
    hits = np.diag(confusion)
    # per class: F1 = 2·TP / (2·TP + FP + FN) = 2·TP / (predicted + actual); 0 when the class is nowhere
    counted = confusion.sum(axis=0) + confusion.sum(axis=1)
    per_class = np.divide(2 * hits, counted, out=np.zeros(num_labels), where=counted > 0)
    return float(per_class.mean())


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
