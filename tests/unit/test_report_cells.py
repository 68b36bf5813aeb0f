"""The report's view of the runs: today's names, grid order, a cells table that fits a terminal, and the
majority-class flag (checked against F1-macro and accuracy computed from real predictions)."""
import numpy as np
import pandas as pd
import pytest

from raygrid.report.cells import cells_table, cells_view, majority_flags, prepared
from raygrid.report.render import render, to_markdown
from raygrid.report.tables import all_tables
from raygrid.training.metrics import accuracy, f1_macro


def scored(preds, labels, classes=2):
    preds, labels = np.asarray(preds), np.asarray(labels)
    return {"status": "FINISHED", "metrics.test_f1_macro": f1_macro(preds, labels, classes),
            "metrics.test_accuracy": accuracy(preds, labels)}


def test_the_majority_rule_flags_one_class_models_and_only_them():
    labels = np.array([0] * 63 + [1] * 37)
    rows = {
        "always majority": scored(np.zeros(100), labels),
        "right only on class 0": scored(np.r_[np.zeros(60), np.ones(3), np.zeros(37)], labels),  # errors both ways
        "always minority": scored(np.ones(100), labels),
        "three classes, one predicted": scored(np.zeros(100), np.r_[np.zeros(50), np.ones(30), 2 * np.ones(20)], 3),
        "learns a little": scored(np.r_[np.zeros(63), np.ones(5), np.zeros(32)], labels),
        "good": scored(np.r_[np.zeros(60), np.ones(3), np.ones(30), np.zeros(7)], labels),
    }
    runs = pd.DataFrame(rows.values(), index=list(rows))
    assert runs.loc["always majority", "metrics.test_f1_macro"] == pytest.approx(0.63 / 1.63)  # a / (1 + a)
    flags = majority_flags(runs)
    assert flags.to_dict() == {"always majority": True, "right only on class 0": True, "always minority": True,
                               "three classes, one predicted": True, "learns a little": False, "good": False}
    failed = runs.assign(status="FAILED")
    assert not majority_flags(failed).any() and not majority_flags(runs.drop(columns="metrics.test_accuracy")).any()


def staged_runs():
    """As fetch_runs returns them: newest first, two written before cell names changed."""
    rows = [("finetune/attention=favor(nb_features=64)", "favor(nb_features=64)", 0.60, 0.60),
            ("finetune/attention=softmax", "softmax", 0.80, 0.81),
            ("tapt/attention=favor-nb_features=64", "favor-nb_features=64", None, None),  # recorded by raygrid < 0.2
            ("tapt/attention=softmax", "softmax", None, None)]
    frame = pd.DataFrame([{"cell": cell, "status": "FINISHED", "stage": cell.split("/")[0], "error": "",
                           "params.axis.attention": label, "metrics.test_f1_macro": f1, "metrics.test_accuracy": acc,
                           "metrics.best_val_f1_macro": f1, "metrics.final_val_loss": None if f1 else 3.0,
                           "metrics.epoch_time_mean_s": 10.0, "metrics.peak_gpu_mem_mb": 0.0,
                           "metrics.peak_host_mem_mb": 900.0, "metrics.tokens_per_s": 1e4, "metrics.train_time_s": 20.0}
                          for cell, label, f1, acc in rows])
    return frame.assign(run_id=[f"r{i}" for i in range(len(frame))])


def test_prepared_runs_have_todays_names_and_the_grid_order():
    order = ["tapt/attention=softmax", "tapt/attention=favor(nb_features=64)", "finetune/attention=softmax",
             "finetune/attention=favor(nb_features=64)"]
    runs = prepared(staged_runs(), order)
    assert list(runs["cell"]) == order
    assert list(runs["params.axis.attention"]) == ["softmax", "favor(nb_features=64)"] * 2
    assert list(prepared(staged_runs())["cell"]) == order  # without the grid: the order they were recorded in
    shuffled = prepared(staged_runs(), ["finetune/attention=softmax"])  # listed cells first, the rest as recorded
    assert list(shuffled["cell"])[0] == "finetune/attention=softmax" and len(shuffled) == 4


def test_the_cells_table_fits_a_terminal_and_the_csv_keeps_every_column():
    runs = prepared(staged_runs())
    runs.loc[3, ["status", "error"]] = ["FAILED", "CUDA out of memory. Tried to allocate 2.00 GiB " * 4]
    view, full = cells_view(runs), cells_table(runs)
    assert list(view.columns) == ["cell", "status", "test_f1", "val_f1", "final_val_loss", "epoch_s", "host_MiB",
                                  "error"]
    assert {"tokens/s", "train_s", "test_acc", "gpu_MiB", "best_val_f1"} <= set(full.columns) and len(full.columns) > len(view.columns)
    assert full.loc[3, "error"].count("CUDA") == 4 and view.loc[3, "error"].endswith("…")
    widest = max(len(line) for line in to_markdown(view).splitlines() if line.startswith("|"))
    beside_the_name = widest - view["cell"].str.len().max()
    assert beside_the_name <= 125, beside_the_name  # 15 columns took 230 characters with shorter names
    assert list(all_tables(runs)["cells"].columns) == list(view.columns)


def test_the_flag_is_a_column_with_its_rule_under_the_table():
    runs = prepared(staged_runs())
    runs.loc[3, ["metrics.test_f1_macro", "metrics.test_accuracy"]] = [0.6 / 1.6, 0.6]  # favor: one class
    text = render({"cells": cells_view(runs)}, "md")
    assert "| majority class |" in text and "accuracy / (1 + accuracy)" in text
    assert cells_view(runs)["flag"].tolist() == ["", "", "", "majority class"]
    assert "flag" not in cells_view(prepared(staged_runs()))  # nothing flagged: no column
