"""PNG figures of a grid: test F1 per cell, and validation curves per epoch (matplotlib, no display)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: clusters and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def plot_test_f1(runs: pd.DataFrame, path: Path) -> Path | None:
    """Horizontal bars of test F1-macro (and best validation F1) per finished cell, best first."""
    finished = runs[(runs["status"] == "FINISHED") & runs.get("metrics.test_f1_macro", pd.Series(dtype=float)).notna()]
    if finished.empty:
        return None
    finished = finished.sort_values("metrics.test_f1_macro")
    height = max(2.5, 0.35 * len(finished) + 1)
    fig, ax = plt.subplots(figsize=(9, height))
    y = range(len(finished))
    ax.barh([i + 0.2 for i in y], finished["metrics.test_f1_macro"], height=0.4, label="test")
    if "metrics.best_val_f1_macro" in finished:
        ax.barh([i - 0.2 for i in y], finished["metrics.best_val_f1_macro"], height=0.4, label="best validation")
    ax.set_yticks(list(y), finished["cell"], fontsize=8)
    ax.set_xlabel("F1-macro")
    ax.set_xlim(0, 1)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("F1-macro per cell")
    return _save(fig, path)


def plot_curves(histories: dict[str, list[tuple[int, float]]], metric: str, path: Path) -> Path | None:
    """One line per cell of `metric` against epoch (e.g. val_f1_macro, train_loss)."""
    if not any(histories.values()):
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for cell, points in sorted(histories.items()):
        if points:
            steps, values = zip(*sorted(points))
            ax.plot(steps, values, marker="o", label=cell)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per epoch")
    ax.legend(fontsize=7, loc="best")
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
