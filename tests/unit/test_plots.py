"""Plots are written as real PNGs, and skipped (no file) when there is nothing to draw."""
import pandas as pd

from raygrid.report.plots import plot_curves, plot_lsh_mask, plot_pareto, plot_test_f1

PNG = b"\x89PNG\r\n\x1a\n"


def test_f1_bars_and_curves_are_pngs(tmp_path):
    runs = pd.DataFrame({"cell": ["a", "b", "c"], "status": ["FINISHED", "FINISHED", "FAILED"],
                         "metrics.test_f1_macro": [0.7, 0.8, None], "metrics.best_val_f1_macro": [0.6, 0.9, None]})
    bars = plot_test_f1(runs, tmp_path / "f1.png")
    curves = plot_curves({"a": [(0, 0.5), (1, 0.7)], "b": [(1, 0.8), (0, 0.4)]}, "val_f1_macro", tmp_path / "c.png")
    for path in (bars, curves):
        assert path.read_bytes()[:8] == PNG and path.stat().st_size > 5000


def test_nothing_to_draw(tmp_path):
    failed = pd.DataFrame({"cell": ["a"], "status": ["FAILED"], "metrics.test_f1_macro": [None]})
    assert plot_test_f1(failed, tmp_path / "f1.png") is None
    assert plot_curves({"a": []}, "train_loss", tmp_path / "c.png") is None
    assert not list(tmp_path.iterdir())


def test_lsh_mask_plot_needs_both_mask_values(tmp_path):
    both = {"True": {"val_loss": [(0, 5.0), (1, 4.0)], "train_loss": [(0, 5.5), (1, 4.2)]},
            "False": {"val_loss": [(1, 4.5), (0, 5.2)]}}  # train_loss optional, steps in any order
    path = plot_lsh_mask(both, tmp_path / "mask.png")
    assert path.read_bytes()[:8] == PNG and path.stat().st_size > 5000
    assert plot_lsh_mask({"True": both["True"]}, tmp_path / "one.png") is None
    assert plot_lsh_mask({"True": both["True"], "False": {"val_loss": []}}, tmp_path / "empty.png") is None
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


def test_pareto_nothing_to_draw(tmp_path):
    no_host = pareto_points([0.0] * 4).assign(host_MiB=None)
    assert plot_pareto(no_host, "gpu_MiB", tmp_path / "m.png") is None
    assert plot_pareto(pareto_points([1.0] * 4).assign(test_f1=None), "epoch_s_mean", tmp_path / "t.png") is None
    assert not list(tmp_path.iterdir())
