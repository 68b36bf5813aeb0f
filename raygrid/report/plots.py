"""PNG figures of a grid (matplotlib, no display): test F1 per cell, per-epoch curves, the LSH mask
experiment's loss curves, and F1-vs-cost Pareto plots. Every function returns None when there is
nothing to draw (and then writes no file)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: clusters and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from raygrid.report.tables import finished_cells, pareto_front  # noqa: E402

Curve = list[tuple[int, float]]
COST_LABELS = {"epoch_s_mean": "mean time per epoch (s)", "gpu_MiB": "peak GPU memory (MiB)",
               "host_MiB": "peak host memory (MiB; CPU run, no GPU memory)"}


def plot_test_f1(runs: pd.DataFrame, path: Path) -> Path | None:
    """Horizontal bars of test F1-macro (and best validation F1) per finished cell, best first."""
    finished = finished_cells(runs)
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


def plot_curves(histories: dict[str, Curve], metric: str, path: Path) -> Path | None:
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


def plot_lsh_mask(histories: dict[str, dict[str, Curve]], path: Path) -> Path | None:
    """Cross-entropy per epoch of LSH with and without the within-chunk mask: val_loss solid, train_loss dashed.

    `histories` maps a mask_within_chunks value ("True"/"False") to {"val_loss": curve, "train_loss": curve}.
    """
    groups = {mask: curves for mask, curves in histories.items() if curves.get("val_loss")}
    if len(groups) < 2:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for mask, curves in sorted(groups.items()):
        steps, values = zip(*sorted(curves["val_loss"]))
        line, = ax.plot(steps, values, marker="o", label=f"mask_within_chunks={mask} (validation)")
        if curves.get("train_loss"):
            steps, values = zip(*sorted(curves["train_loss"]))
            ax.plot(steps, values, linestyle="--", color=line.get_color(), label=f"mask_within_chunks={mask} (train)")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("MLM cross-entropy")
    ax.set_title("LSH attention: masking within chunks")
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def plot_pareto(frame: pd.DataFrame, x: str, path: Path) -> Path | None:
    """Test F1-macro against a cost column of report.pareto_frame; frontier (max F1, min cost) per dataset.

    x = "gpu_MiB" falls back to "host_MiB" when no cell used GPU memory (a CPU run).
    """
    if x == "gpu_MiB" and not (frame[x] > 0).any():
        x = "host_MiB"
    points = frame[frame["test_f1"].notna() & frame[x].notna()]
    if points.empty:
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (dataset, group) in enumerate(points.groupby("dataset", sort=True)):
        colour = colours[i % len(colours)]
        ax.scatter(group[x], group["test_f1"], color=colour, label=dataset or "(no dataset)")
        for row in group.itertuples():
            ax.annotate(str(row.label), (getattr(row, x), row.test_f1), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        front = group[pareto_front(group[x], group["test_f1"])].sort_values(x)
        # the frontier: ringed points joined by the staircase of the best F1 reachable at each cost
        ax.scatter(front[x], front["test_f1"], s=160, facecolors="none", edgecolors=colour)
        ax.step(front[x], front["test_f1"], where="post", color=colour, alpha=0.6)
    ax.set_xlabel(COST_LABELS.get(x, x))
    ax.set_ylabel("test F1-macro")
    ax.set_title(f"test F1-macro vs {COST_LABELS.get(x, x).split(' (')[0]} (ringed: Pareto frontier)")
    ax.legend(title="dataset", fontsize=8, loc="best")
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
