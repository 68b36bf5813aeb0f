"""Plots are written as real PNGs, skipped (no file) when there is nothing to draw, readable (no text drawn
over other text, checked on the Agg renderer's bounding boxes), with error bars when cells ran several seeds."""
from itertools import combinations

import matplotlib.pyplot as plt
import pytest
import pandas as pd
from matplotlib.container import ErrorbarContainer
from matplotlib.text import Text

from raygrid.report.plot_frames import pareto_frame
from raygrid.report.plots import (curves_figure, f1_bars_figure, pareto_figure, plot_curves, plot_ablation,
                                  plot_pareto, plot_test_f1)
from tests.unit.test_report import attention_frame

PNG = b"\x89PNG\r\n\x1a\n"


def overlapping_texts(fig) -> list[tuple[str, str]]:
    """Pairs of visible, non-empty texts whose drawn boxes overlap (1 px tolerance)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer).expanded(1.0, 1.0).padded(-1))
             for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    return [(a, b) for (a, box_a), (b, box_b) in combinations(boxes, 2) if box_a.overlaps(box_b)]


def test_the_overlap_check_sees_labels_placed_beside_crowded_points():
    """What the Pareto plot used to do (a cell name annotated at each point) fails the check."""
    frame = pareto_frame(crowded_runs(cells=14))
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.scatter(frame["epoch_s_mean"], frame["test_f1"])
    for row in frame.itertuples():
        ax.annotate(row.label, (row.epoch_s_mean, row.test_f1), fontsize=7, xytext=(3, 3), textcoords="offset points")
    assert len(overlapping_texts(fig)) > 10
    plt.close(fig)


def crowded_runs(cells=14, seeds=(0,)):
    """Many long-named cells on one dataset with nearly equal scores and costs, and one far away that sets
    the axes' range: labels placed beside the points pile up; attention does not vary, so points are
    labelled by cell."""
    rows = []
    for i in range(cells):
        far = 10 if i == 0 else 1  # cell 0: 10x the time and memory, F1 0.5
        for seed in seeds:
            rows.append({"cell": f"pooling=mean,n_freeze={i},p_drop=0.1,lr=0.0001,seed={seed}", "status": "FINISHED",
                         "params.data.dataset": "imdb", "params.attention.kind": "softmax", "params.seed": str(seed),
                         "metrics.test_f1_macro": 0.5 if i == 0 else 0.80 + 0.001 * i + 0.01 * seed,
                         "metrics.best_val_f1_macro": 0.79 + 0.001 * i,
                         "metrics.epoch_time_mean_s": far * (10.0 + 0.01 * i),
                         "metrics.peak_gpu_mem_mb": far * (1000.0 + i), "metrics.peak_host_mem_mb": 500.0})
    return pd.DataFrame(rows)


def test_f1_bars_and_curves_are_pngs(tmp_path):
    runs = pd.DataFrame({"cell": ["a", "b", "c"], "status": ["FINISHED", "FINISHED", "FAILED"],
                         "metrics.test_f1_macro": [0.7, 0.8, None], "metrics.best_val_f1_macro": [0.6, 0.9, None]})
    bars = plot_test_f1(runs, tmp_path / "f1.png")
    curves = plot_curves({"a": [(0, 0.5), (1, 0.7)], "b": [(1, 0.8), (0, 0.4)]}, "val_f1_macro", tmp_path / "c.png")
    for path in (bars, curves):
        assert path.read_bytes()[:8] == PNG and path.stat().st_size > 5000


def test_f1_bars_have_error_bars_only_with_several_seeds():
    fig = f1_bars_figure(attention_frame())  # 6 cells x 3 seeds
    ax = fig.axes[0]
    assert len(ax.get_yticklabels()) == 6 and not any("seed=" in t.get_text() for t in ax.get_yticklabels())
    test_bars = [c for c in ax.containers if c.get_label() == "test"][0]
    assert test_bars.errorbar is not None and "± sd over n = 3 seeds" in ax.get_xlabel()
    assert max(bar.get_width() for bar in test_bars) == 86.0  # percent, as the tables print F1
    plt.close(fig)
    fig = f1_bars_figure(attention_frame(seeds=(0,)))
    assert all(c.errorbar is None for c in fig.axes[0].containers) and "sd" not in fig.axes[0].get_xlabel()
    plt.close(fig)


def test_f1_bars_of_many_long_cells_do_not_overlap():
    fig = f1_bars_figure(crowded_runs(cells=30, seeds=(0, 1)))
    assert len(fig.axes[0].get_yticklabels()) == 30
    assert overlapping_texts(fig) == []
    plt.close(fig)


def test_nothing_to_draw(tmp_path):
    failed = pd.DataFrame({"cell": ["a"], "status": ["FAILED"], "metrics.test_f1_macro": [None]})
    assert plot_test_f1(failed, tmp_path / "f1.png") is None
    assert plot_curves({"a": []}, "train_loss", tmp_path / "c.png") is None
    assert not list(tmp_path.iterdir())


def test_curves_have_units_and_a_legend_beside_the_axes():
    fig = curves_figure({f"cell-{i}": [(0, 0.5), (1, 0.6 + 0.01 * i)] for i in range(12)}, "val_f1_macro")
    ax = fig.axes[0]
    assert ax.get_ylabel() == "validation F1-macro (%)" and ax.lines[0].get_ydata()[0] == 50.0
    assert overlapping_texts(fig) == []
    plt.close(fig)


def test_lsh_mask_plot_needs_both_mask_values(tmp_path):
    both = {"True": {"val_loss": [(0, 5.0), (1, 4.0)], "train_loss": [(0, 5.5), (1, 4.2)]},
            "False": {"val_loss": [(1, 4.5), (0, 5.2)]}}  # train_loss optional, steps in any order
    path = plot_ablation(both, "mask_within_chunks", "LSH mask", tmp_path / "mask.png")
    assert path.read_bytes()[:8] == PNG and path.stat().st_size > 5000
    assert plot_ablation({"True": both["True"]}, "m", "t", tmp_path / "one.png") is None
    assert plot_ablation({"True": both["True"], "False": {"val_loss": []}}, "m", "t",
                         tmp_path / "empty.png") is None
    assert not (tmp_path / "one.png").exists() and not (tmp_path / "empty.png").exists()


def pareto_points(gpu):
    return pd.DataFrame({"label": ["softmax", "lsh", "favor", "softmax"], "dataset": ["imdb", "imdb", "imdb", "arxiv"],
                         "test_f1": [0.8, 0.7, None, 0.6], "epoch_s_mean": [10.0, 5.0, 2.0, 30.0],
                         "gpu_MiB": gpu, "host_MiB": [900.0, 800.0, 700.0, None]})


def test_pareto_plots_time_and_memory(tmp_path):
    for x in ("epoch_s_mean", "gpu_MiB"):
        path = plot_pareto(pareto_points([2000.0, 1000.0, 500.0, 3000.0]), x, tmp_path / f"{x}.png")
        assert path.read_bytes()[:8] == PNG and path.stat().st_size > 5000
    # a CPU run (no GPU memory anywhere) falls back to host memory
    assert plot_pareto(pareto_points([0.0] * 4), "gpu_MiB", tmp_path / "host.png").exists()


def test_pareto_names_points_by_marker_and_legend_not_by_text_beside_them():
    frame = pareto_frame(crowded_runs(cells=14))
    for x in ("epoch_s_mean", "gpu_MiB"):
        fig = pareto_figure(frame, x)
        ax = fig.axes[0]
        assert len(ax.texts) == 0  # no annotations: every name is in the legend
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert set(frame["label"]) <= set(legend) and "imdb" in legend
        markers = {(line.get_marker(), line.get_markerfacecolor() == "none") for line in ax.get_legend().get_lines()
                   if line.get_label() in set(frame["label"])}
        assert len(markers) == 14  # one distinct marker per cell
        assert ax.get_xlabel() in ("mean time per epoch (s)", "peak GPU memory (MiB)")
        assert ax.get_ylabel() == "test F1-macro (%)"
        assert overlapping_texts(fig) == []
        plt.close(fig)


def test_pareto_points_carry_error_bars_over_seeds():
    fig = pareto_figure(pareto_frame(attention_frame()), "epoch_s_mean")  # 3 seeds per point
    ax = fig.axes[0]
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 6 and all(c.has_yerr for c in bars) and "mean ± sd over seeds" in ax.get_ylabel()
    assert overlapping_texts(fig) == []
    plt.close(fig)
    fig = pareto_figure(pareto_frame(attention_frame(seeds=(0,))), "epoch_s_mean")
    assert not any(c.has_yerr for c in fig.axes[0].containers if isinstance(c, ErrorbarContainer))
    plt.close(fig)


def test_pareto_nothing_to_draw(tmp_path):
    no_host = pareto_points([0.0] * 4).assign(host_MiB=None)
    assert plot_pareto(no_host, "gpu_MiB", tmp_path / "m.png") is None
    assert plot_pareto(pareto_points([1.0] * 4).assign(test_f1=None), "epoch_s_mean", tmp_path / "t.png") is None
    assert not list(tmp_path.iterdir())


def staged(frame, stage="ft"):
    """attention_frame as a staged grid records it: the cell name starts with its stage."""
    return frame.assign(stage=stage, cell=stage + "/" + frame["cell"])


def test_a_staged_cell_is_labelled_with_its_stage_once():
    from raygrid.report.publish import _histories

    runs = staged(attention_frame())
    labels = [t.get_text() for t in f1_bars_figure(runs).axes[0].get_yticklabels()]
    assert len(labels) == 6 and all(label.startswith("ft/task=") and "ft/ft/" not in label for label in labels)
    curves = _histories(lambda run_id, metric: [(0, 0.5)], runs.assign(run_id=range(len(runs))), "val_f1_macro")
    assert set(curves) == {label.split(" [")[0] for label in labels}  # one curve per seed under each cell's label
    assert all(len(seeds) == 3 for seeds in curves.values())
    plt.close("all")


def test_epochs_count_from_one_on_integer_ticks():
    fig = curves_figure({"a": [(0, 0.5)], "b": [(0, 0.6)]}, "val_f1_macro")  # one epoch
    ax = fig.axes[0]
    assert list(ax.get_xticks()) == [1] and ax.get_xlim() == (0.5, 1.5) and list(ax.lines[0].get_xdata()) == [1]
    plt.close(fig)
    fig = curves_figure({"a": [(0, 0.5), (1, 0.6), (2, 0.7)]}, "train_loss")
    assert list(fig.axes[0].get_xticks()) == [1, 2, 3] and fig.axes[0].get_xlabel() == "epoch"
    plt.close(fig)
    both = {"True": {"val_loss": [(0, 5.0)]}, "False": {"val_loss": [(0, 5.2)]}}
    from raygrid.report.plots import ablation_figure

    fig = ablation_figure(both, "mask_within_chunks", "LSH mask")
    assert list(fig.axes[0].get_xticks()) == [1]
    plt.close(fig)


def test_seeds_are_drawn_as_their_mean_in_a_band_of_one_sd():
    seeds = [[(0, 0.5), (1, 0.6)], [(0, 0.7), (1, 0.8)], [(0, 0.6), (1, 0.7)]]
    fig = curves_figure({"ft/cell": seeds, "ft/single": [[(0, 0.4), (1, 0.45)]]}, "val_f1_macro")
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.lines] == ["ft/cell", "ft/single"]  # one line per cell, not per seed
    assert list(ax.lines[0].get_ydata()) == pytest.approx([60.0, 70.0])  # the mean, in percent
    bands = ax.collections
    assert len(bands) == 1  # the single-seed cell has no band
    low, high = bands[0].get_paths()[0].vertices[:, 1].min(), bands[0].get_paths()[0].vertices[:, 1].max()
    assert (low, high) == pytest.approx((50.0, 80.0))  # 60 - 10 and 70 + 10: the sample sd of 0.5, 0.7, 0.6 is 0.1
    assert "mean ± sd over n = 1–3 seeds" in ax.get_title()
    plt.close(fig)


def test_pareto_points_carry_x_error_bars_of_their_cost_over_seeds():
    runs = attention_frame()
    runs["metrics.epoch_time_mean_s"] += runs["params.seed"].astype(float)  # seeds 0, 1, 2: +0, +1, +2 s
    frame = pareto_frame(runs)
    assert frame["epoch_s_mean sd"].tolist() == pytest.approx([1.0] * 6)
    fig = pareto_figure(frame, "epoch_s_mean")
    bars = [c for c in fig.axes[0].containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 6 and all(c.has_xerr and c.has_yerr for c in bars)
    x_bar = bars[0].lines[2][0].get_segments()[0]  # the horizontal bar: mean ± sd of the time per epoch
    assert abs(x_bar[1][0] - x_bar[0][0]) == pytest.approx(2.0)
    assert "mean ± sd over seeds" in fig.axes[0].get_xlabel()
    plt.close(fig)


def test_a_cell_at_the_majority_class_level_is_hatched_and_crossed():
    runs = attention_frame()
    favor = runs["params.attention.kind"] == "favor"
    runs.loc[favor, "metrics.test_accuracy"] = 0.6
    runs.loc[favor, "metrics.test_f1_macro"] = 0.6 / 1.6  # what always predicting a 60 % class scores
    fig = f1_bars_figure(runs)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    flagged = [label for label in labels if label.endswith("[majority class]")]
    assert len(flagged) == 2 and all("favor" in label for label in flagged)
    test_bars = [c for c in ax.containers if c.get_label() == "test"][0]
    assert sum(bool(bar.get_hatch()) for bar in test_bars) == 2
    assert not any(bar.get_hatch() for c in ax.containers if c.get_label() == "best validation" for bar in c)
    legend = ax.get_legend()
    entries = {t.get_text(): handle for t, handle in zip(legend.get_texts(), legend.legend_handles)}
    assert entries["majority class level (test)"].get_hatch() == "///" and not entries["test"].get_hatch()
    plt.close(fig)
    fig = pareto_figure(pareto_frame(runs), "epoch_s_mean")
    crosses = [c.get_offsets()[0].tolist() for c in fig.axes[0].collections if c.get_gid() == "majority class"]
    assert crosses == [pytest.approx([2.5, 37.5])] * 2  # the two favor points (imdb, hyperpartisan), crossed
    assert "majority class level" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert overlapping_texts(fig) == []
    plt.close(fig)
