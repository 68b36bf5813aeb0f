"""PNG figures of a grid (matplotlib, no display): test F1 per cell, per-epoch curves, the LSH mask
experiment's loss curves, and F1-vs-cost Pareto plots. Every `plot_*` function returns None when there
is nothing to draw (and then writes no file); the `*_figure` functions build the figure it saves.

F1 is drawn in percent, as the tables print it. With several seeds per cell a bar or point is the mean
and its error bar ± one sample standard deviation (the tables' `mean ± sd`), in both directions on the
Pareto plots (time and memory vary by seed too); a curve is the mean over seeds in a ± sd band.
Epochs count from 1, as the console does, on integer ticks. Cells at the majority-class level
(raygrid.report.cells.majority_flags) are hatched bars and crossed points. Points are told apart by
marker and colour with legends, never by text placed beside them (names of long cells overlap).
"""
from __future__ import annotations

from itertools import product
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: clusters and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator, StrMethodFormatter  # noqa: E402

from raygrid.report.cells import MAJORITY  # noqa: E402
from raygrid.report.plot_frames import Curve, bars_frame, curve_frame  # noqa: E402
from raygrid.report.statistics import pareto_front  # noqa: E402
from raygrid.training import metric_names as M  # noqa: E402

PERCENT = 100  # F1 is stored as a fraction, drawn in percent
COST_LABELS = {"epoch_s_mean": "mean time per epoch (s)", "gpu_MiB": "peak GPU memory (MiB)",
               "host_MiB": "peak host memory (MiB; CPU run, no GPU memory)"}
CURVE_LABELS = {M.VAL_F1_MACRO: ("validation F1-macro (%)", PERCENT), M.TRAIN_LOSS: ("training loss (cross-entropy)", 1),
                M.VAL_LOSS: ("validation loss (cross-entropy)", 1)}  # metric -> (axis label, scale)
# 12 shapes x (filled, hollow): 24 labels get a marker of their own before any repeats.
MARKERS = [(shape, fill) for fill, shape in product((True, False), "osD^v<>ph*XP")]


def plot_test_f1(runs: pd.DataFrame, path: Path) -> Path | None:
    """Horizontal bars of test F1-macro (and best validation F1) per cell, best on top; error bars over seeds."""
    return _save(f1_bars_figure(runs), path)


def f1_bars_figure(runs: pd.DataFrame) -> Figure | None:
    cells = bars_frame(runs)
    if cells.empty:
        return None
    cells = cells.sort_values("test_f1", kind="stable").reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(9, max(2.5, 0.35 * len(cells) + 1.2)))
    y = np.arange(len(cells))
    spread = cells["n"].max() > 1
    flagged = (cells["majority"] > 0).to_numpy()
    handles = []  # drawn here: a container's own legend entry would take the hatch of its first bar
    for column, offset, name in (("test_f1", 0.2, "test"), ("val_f1", -0.2, "best validation")):
        if cells[column].notna().any():
            error = PERCENT * cells[f"{column} sd"] if spread else None  # NaN (one seed): no bar, not a 0-width one
            bars = ax.barh(y + offset, PERCENT * cells[column], height=0.4, xerr=error, capsize=2, label=name)
            for bar, hatched in zip(bars, flagged & (column == "test_f1")):  # the flag is on the test score
                bar.set_hatch("///" if hatched else None)
            handles.append(Patch(facecolor=bars.patches[0].get_facecolor(), label=name))
    if flagged.any():
        handles.append(Patch(facecolor="white", edgecolor="0.3", hatch="///", label=f"{MAJORITY} level (test)"))
    ax.set_yticks(y, [_flagged_label(row) for row in cells.to_dict("records")], fontsize=8)
    ax.set_xlabel("F1-macro (%)" + (f"; error bars: ± sd over {_seeds(cells['n'])} seeds" if spread else ""))
    ax.set_xlim(0, PERCENT)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.set_title("F1-macro per cell")
    return fig


def _flagged_label(row: dict) -> str:
    """A bar's label, marked when seeds of the cell scored at the majority-class level."""
    if not row["majority"]:
        return row["label"]
    share = "" if row["majority"] == row["n"] else f": {row['majority']} of {row['n']} seeds"
    return f"{row['label']} [{MAJORITY}{share}]"


def _seeds(counts: pd.Series) -> str:
    low, high = int(counts.min()), int(counts.max())
    return f"n = {high}" if low == high else f"n = {low}–{high}"


def plot_curves(histories: dict[str, list[Curve]], metric: str, path: Path) -> Path | None:
    """One line per cell of `metric` against epoch (e.g. val_f1_macro, train_loss): its seeds' mean in a ± sd band."""
    return _save(curves_figure(histories, metric), path)


def curves_figure(histories: dict[str, list[Curve]], metric: str) -> Figure | None:
    """`histories`: label -> its curves, one per seed (a single curve, a list of points, is taken as one seed)."""
    groups = {label: [curves] if curves and isinstance(curves[0], tuple) else curves
              for label, curves in histories.items()}
    frame = curve_frame(groups)
    if frame.empty:
        return None
    label, scale = CURVE_LABELS.get(metric, (metric, 1))
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for cell, points in frame.groupby("label", sort=False):
        mean, sd = scale * points["mean"].to_numpy(float), scale * points["sd"].to_numpy(float)
        line, = ax.plot(points["epoch"], mean, marker="o", label=cell)
        if (points["n"] > 1).any():  # several seeds: the band of ± one sample sd around their mean
            ax.fill_between(points["epoch"], mean - sd, mean + sd, color=line.get_color(), alpha=0.2, linewidth=0)
    _epoch_axis(ax, frame["epoch"])
    ax.set_ylabel(label)
    seeds = frame["n"].max() > 1
    ax.set_title(f"{label.split(' (')[0]} per epoch" + (f" (mean ± sd over {_seeds(frame['n'])} seeds)" if seeds else ""))
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the axes: never over a curve
    return fig


def _epoch_axis(ax, epochs: pd.Series) -> None:
    """Epochs 1, 2, ... (the console's count) on integer ticks; one epoch is one tick, not a ±0.04 range."""
    shown = sorted({int(e) for e in epochs})
    ax.set_xlabel("epoch")
    if len(shown) <= 20:
        ax.set_xticks(shown)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(shown[0] - 0.5, shown[-1] + 0.5)


def plot_ablation(histories: dict[str, dict[str, Curve]], param: str, title: str, path: Path) -> Path | None:
    """MLM cross-entropy per epoch for each value of one on/off setting: val_loss solid, train_loss dashed.

    `histories` maps the setting's value ("True"/"False") to {"val_loss": curve, "train_loss": curve};
    None (nothing written) unless both values have a curve. Cells without a validation split (the
    study's Wikipedia stage, whose plot shows training cross-entropy) draw their train_loss solid.
    """
    return _save(ablation_figure(histories, param, title), path)


def ablation_figure(histories: dict[str, dict[str, Curve]], param: str, title: str) -> Figure | None:
    groups = {value: curves for value, curves in histories.items() if curves.get(M.VAL_LOSS) or curves.get(M.TRAIN_LOSS)}
    if len(groups) < 2:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    epochs = []
    for value, curves in sorted(groups.items()):
        color = None
        if curves.get(M.VAL_LOSS):
            steps, values = zip(*sorted(curves[M.VAL_LOSS]))
            epochs += [step + 1 for step in steps]  # MLflow steps are 0-based epochs
            color = ax.plot([step + 1 for step in steps], values, marker="o",
                            label=f"{param}={value} (validation)")[0].get_color()
        if curves.get(M.TRAIN_LOSS):
            steps, values = zip(*sorted(curves[M.TRAIN_LOSS]))
            epochs += [step + 1 for step in steps]
            style = {"linestyle": "--", "color": color} if color else {"marker": "o"}  # alone: drawn solid
            ax.plot([step + 1 for step in steps], values, label=f"{param}={value} (train)", **style)
    _epoch_axis(ax, pd.Series(epochs))
    ax.set_ylabel("MLM cross-entropy (nats per masked token)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="best")
    return fig


def plot_pareto(frame: pd.DataFrame, x: str, path: Path) -> Path | None:
    """Test F1-macro against a cost column of plot_frames.pareto_frame; frontier (max F1, min cost) per dataset.

    x = "gpu_MiB" falls back to "host_MiB" when no cell used GPU memory (a CPU run).
    """
    return _save(pareto_figure(frame, x), path)


def pareto_figure(frame: pd.DataFrame, x: str) -> Figure | None:
    """Colour = dataset, marker = label (attention variant or cell), both in legends beside the axes."""
    if x == "gpu_MiB" and not (frame[x] > 0).any():
        x = "host_MiB"
    points = frame[frame["test_f1"].notna() & frame[x].notna()]
    if points.empty:
        return None
    labels = sorted(points["label"].astype(str).unique())
    marker = {label: MARKERS[i % len(MARKERS)] for i, label in enumerate(labels)}
    fig, ax = plt.subplots(figsize=(9, 5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    datasets = sorted(points["dataset"].unique())
    for i, dataset in enumerate(datasets):
        colour, group = colours[i % len(colours)], points[points["dataset"] == dataset]
        for row in group.to_dict("records"):
            shape, filled = marker[str(row["label"])]
            y_sd, x_sd = row.get("test_f1 sd", np.nan), row.get(f"{x} sd", np.nan)  # NaN with one seed: no bar
            ax.errorbar(row[x], PERCENT * row["test_f1"], yerr=None if pd.isna(y_sd) else PERCENT * y_sd,
                        xerr=None if pd.isna(x_sd) else x_sd, fmt=shape, color=colour,
                        markerfacecolor=colour if filled else "none", capsize=2)
            if row.get("majority", 0):
                ax.scatter(row[x], PERCENT * row["test_f1"], marker="x", s=90, color="black", zorder=3, gid=MAJORITY)
        front = group[pareto_front(group[x], group["test_f1"])].sort_values(x)
        # the frontier: ringed points joined by the staircase of the best F1 reachable at each cost
        ax.scatter(front[x], PERCENT * front["test_f1"], s=220, facecolors="none", edgecolors=colour, linewidths=0.8)
        ax.step(front[x], PERCENT * front["test_f1"], where="post", color=colour, alpha=0.6)
    ax.set_xlabel(COST_LABELS.get(x, x))
    if x.endswith("MiB"):
        ax.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))  # 20,480 MiB, as the tables print it
    spread = "n" in points and points["n"].max() > 1
    ax.set_ylabel("test F1-macro (%)" + (" (mean ± sd over seeds)" if spread else ""))
    if spread:
        ax.set_xlabel(ax.get_xlabel() + "; mean ± sd over seeds")
    ax.set_title(f"test F1-macro vs {COST_LABELS.get(x, x).split(' (')[0]} (ringed: Pareto frontier)", fontsize=10)
    flagged = "majority" in points and bool((points["majority"] > 0).any())
    _legends(ax, datasets, colours, labels, marker, flagged)
    return fig


def _legends(ax, datasets: list[str], colours: list[str], labels: list[str], marker: dict, flagged: bool = False) -> None:
    """One legend beside the axes: a colour per dataset, a marker per label (a column per 20 entries), the flag."""
    def header(text: str) -> Line2D:
        return Line2D([], [], linestyle="", marker="", label=text)

    handles = [header("dataset")]
    handles += [Line2D([], [], linestyle="", marker="s", color=colours[i % len(colours)], label=d or "(no dataset)")
                for i, d in enumerate(datasets)]
    handles += [header("variant")]
    handles += [Line2D([], [], linestyle="", marker=marker[label][0], color="0.3",
                       markerfacecolor="0.3" if marker[label][1] else "none", label=label) for label in labels]
    if flagged:
        handles += [Line2D([], [], linestyle="", marker="x", color="black", label=f"{MAJORITY} level")]
    legend = ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                       ncols=1 + (len(handles) - 1) // 20, handletextpad=0.3)
    for text, handle in zip(legend.get_texts(), handles):
        if not handle.get_marker() or handle.get_marker() == "None":
            text.set_fontweight("bold")  # the two section headers


def _save(fig: Figure | None, path: Path) -> Path | None:
    if fig is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")  # "tight": the legends beside the axes are kept
    plt.close(fig)
    return path
