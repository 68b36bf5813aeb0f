"""Plots are written as real PNGs, and skipped when there is nothing to draw."""
import pandas as pd

from raygrid.plots import plot_curves, plot_test_f1

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
