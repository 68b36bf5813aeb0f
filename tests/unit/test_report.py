"""Report tables from a hand-made runs DataFrame (what tracking.fetch_runs returns)."""
import numpy as np
import pandas as pd
import pytest

from raygrid.report.plot_frames import bars_frame, pareto_frame, without_seed
from raygrid.report.statistics import pareto_front, t_interval
from raygrid.report.tables import (PAIRED_TITLE, SEEDS_TITLE, all_tables, attention_table, best_table, f1_table,
                                   paired_table, seeds_table)


def runs_frame():
    rows = []
    for dataset, offset in (("imdb", 0.0), ("hyperpartisan", 0.1)):
        for pooling in ("cls", "mean"):
            for n_freeze in (0, 1):
                for seed in (0, 1):
                    score = 0.5 + offset + (0.2 if pooling == "mean" else 0) + 0.01 * n_freeze + 0.01 * seed
                    rows.append({"cell": f"{dataset}-{pooling}-{n_freeze}-{seed}", "status": "FINISHED",
                                 "error": "", "params.axis.data.dataset": dataset, "params.axis.seed": str(seed),
                                 "params.data.dataset": dataset, "params.model.pooling": pooling,
                                 "params.model.n_freeze": str(n_freeze), "params.model.p_drop": "0.1",
                                 "params.seed": str(seed), "metrics.test_f1_macro": score,
                                 "metrics.best_val_f1_macro": score - (0.3 if n_freeze else 0),
                                 "metrics.test_accuracy": score})
    rows.append({"cell": "broken", "status": "FAILED", "error": "CUDA out of memory",
                 "params.data.dataset": "imdb", "params.model.pooling": "cls"})
    return pd.DataFrame(rows)


def test_f1_table_rows_are_hparams_columns_are_datasets_with_seed_spread():
    table = f1_table(runs_frame())
    # rows and dataset columns in the order the runs come (grid order), not alphabetical
    assert list(table.columns) == ["pooling", "N_freeze", "P_drop", "imdb", "imdb sd", "hyperpartisan",
                                   "hyperpartisan sd"]
    assert len(table) == 4  # failed run excluded, seeds averaged
    row = table[(table.pooling == "mean") & (table.N_freeze == "1")].iloc[0]
    # numbers stay numbers (formatting is the renderer's job): the mean and the sample sd of 0.71 and 0.72
    assert row["imdb"] == pytest.approx(0.5 + 0.2 + 0.01 + 0.005) and row["imdb sd"] == pytest.approx(0.01 / 2**0.5)
    assert table["imdb"].dtype == float and table["imdb sd"].dtype == float
    one_seed = f1_table(runs_frame()[lambda r: r["params.seed"] != "1"])
    assert "imdb sd" not in one_seed  # nothing to spread over


def test_best_table_selects_on_validation_not_test():
    best = best_table(runs_frame()).set_index("dataset")
    # n_freeze=1 has the higher test score but a much lower validation score
    assert best.loc["imdb", "pooling"] == "mean" and best.loc["imdb", "N_freeze"] == "0"
    assert best.loc["hyperpartisan", "test_f1"] == pytest.approx(0.5 + 0.1 + 0.2 + 0.005)


def test_cells_table_keeps_failed_cells_with_reason():
    cells = all_tables(runs_frame())["cells"]
    assert len(cells) == 17
    assert cells.set_index("cell").loc["broken", "error"] == "CUDA out of memory"


def test_baseline_is_the_first_row_and_not_a_selection_candidate():
    runs = runs_frame()
    baseline = {"cell": "tfidf", "status": "FINISHED", "error": "", "params.kind": "tfidf",
                "params.data.dataset": "imdb", "params.seed": "0", "metrics.test_f1_macro": 0.99,
                "metrics.best_val_f1_macro": 0.99}
    runs = pd.concat([runs, pd.DataFrame([baseline])], ignore_index=True)
    table = f1_table(runs)
    assert table.iloc[0]["pooling"] == "TF-IDF+LR" and table.iloc[0]["imdb"] == pytest.approx(0.99)
    assert pd.isna(table.iloc[0]["imdb sd"])  # one run: no spread, rather than a zero one
    assert pd.isna(table.iloc[0]["hyperpartisan"])  # the baseline ran on imdb only
    assert best_table(runs).set_index("dataset").loc["imdb", "pooling"] == "mean"


def test_a_grid_without_runs_has_only_the_empty_core_tables():
    tables = all_tables(pd.DataFrame())  # what fetch_runs returns before any cell ran
    assert list(tables) == ["cells", "test F1-macro", "best hyperparameters (chosen on validation F1-macro)"]
    assert all(table.empty for table in tables.values())


def test_attention_table_appears_only_when_attention_varies():
    runs = runs_frame()
    assert "attention variants" not in all_tables(runs)
    runs["params.axis.attention"] = ["softmax", "favor-nb_features=64"] * 8 + [None]
    runs["metrics.epoch_time_mean_s"] = 2.0
    table = all_tables(runs)["attention variants"]
    assert set(table["attention"]) == {"softmax", "favor-nb_features=64"}
    assert set(table["dataset"]) == {"imdb", "hyperpartisan"} and (table["cells"] == 4).all()


def test_the_baseline_is_no_attention_variant():
    """A TF-IDF cell (no attention params) neither makes a variant row nor joins the softmax mean."""
    runs = runs_frame()
    runs["params.attention.kind"] = "softmax"
    baseline = {"cell": "kind=tfidf", "status": "FINISHED", "error": "", "params.kind": "tfidf",
                "params.data.dataset": "imdb", "params.seed": "0", "metrics.test_f1_macro": 0.01}
    assert "attention variants" not in all_tables(pd.concat([runs, pd.DataFrame([baseline])], ignore_index=True))
    runs["params.axis.attention"] = ["softmax", "favor-nb_features=64"] * 8 + [None]
    with_baseline = pd.concat([runs, pd.DataFrame([baseline])], ignore_index=True)
    table = attention_table(with_baseline)
    assert set(table["attention"]) == {"softmax", "favor-nb_features=64"}
    assert table.equals(attention_table(runs))  # the baseline's 0.01 is in no mean


def attention_frame(stage="", seeds=(0, 1, 2), tasks=("imdb", "hyperpartisan")):
    """softmax / lsh / favor per task and seed; lsh is exactly +0.05 on every seed, favor -0.10."""
    rows = []
    for task in tasks:
        for label, kind, delta, cost in (("softmax", "softmax", 0.0, 1.0), ("lsh-num_hashes=2", "lsh", 0.05, 0.5),
                                         ("favor-nb_features=64", "favor", -0.10, 0.25)):
            for seed in seeds:
                rows.append({"cell": f"task={task},attention={label},seed={seed}", "status": "FINISHED", "error": "",
                             "stage": stage, "params.kind": "finetune", "params.axis.task": task,
                             "params.axis.attention": label, "params.axis.seed": str(seed),
                             "params.data.dataset": task, "params.model.pooling": "cls",
                             "params.model.n_freeze": "0", "params.model.p_drop": "0.1",
                             "params.attention.kind": kind, "params.seed": str(seed),
                             "metrics.test_f1_macro": 0.70 + delta + 0.01 * seed + (0.1 if task == "imdb" else 0),
                             "metrics.best_val_f1_macro": 0.7, "metrics.epoch_time_mean_s": 10.0 * cost,
                             "metrics.peak_gpu_mem_mb": 1000.0 * cost, "metrics.peak_host_mem_mb": 500.0})
    return pd.DataFrame(rows)


def mlm_frame(stage="mlm"):
    rows = []
    for kind, loss in (("softmax", 3.0), ("lsh", 3.5)):
        for seed in (0, 1):
            rows.append({"cell": f"attention={kind},seed={seed}", "status": "FINISHED", "error": "", "stage": stage,
                         "params.kind": "mlm", "params.axis.attention": kind, "params.axis.seed": str(seed),
                         "params.data.dataset": "wikitext", "params.attention.kind": kind, "params.seed": str(seed),
                         "metrics.final_val_loss": loss + 0.1 * seed, "metrics.val_loss": loss + 0.1 * seed,
                         "metrics.epoch_time_mean_s": 100.0, "metrics.peak_gpu_mem_mb": 2000.0,
                         "metrics.peak_host_mem_mb": 800.0})
    return pd.DataFrame(rows)


def test_t_interval_is_the_students_t_interval_of_the_mean():
    values = [0.61, 0.65, 0.70]
    low, high = t_interval(values)
    # mean 0.6533, sd 0.04509, t(0.975, 2) = 4.3027: half-width 4.3027 * 0.04509 / sqrt(3) = 0.1120
    assert (low, high) == (pytest.approx(0.6533 - 0.1120, abs=1e-4), pytest.approx(0.6533 + 0.1120, abs=1e-4))
    # with 3 seeds it is much wider than min..max (what a percentile bootstrap gives), as it must be
    assert low < min(values) and high > max(values)
    assert t_interval(values, level=0.5)[1] - t_interval(values, level=0.5)[0] < high - low
    assert all(np.isnan(t_interval([0.5]))) and all(np.isnan(t_interval([0.5, np.nan])))
    assert t_interval([0.7, 0.7, 0.7]) == (pytest.approx(0.7), pytest.approx(0.7))  # values that agree


def test_seeds_table_only_with_repeated_seeds():
    seeds = seeds_table(attention_frame())
    assert list(seeds.columns) == ["dataset", "attention", "metric", "seeds", "mean", "std", "ci95_low", "ci95_high"]
    row = seeds.set_index(["dataset", "attention"]).loc[("imdb", "softmax")]
    assert row["seeds"] == 3 and row["mean"] == pytest.approx(0.81) and row["std"] == pytest.approx(0.01)
    half = 4.302653 * 0.01 / 3**0.5  # Student-t, 2 degrees of freedom
    assert (row["ci95_low"], row["ci95_high"]) == (pytest.approx(0.81 - half), pytest.approx(0.81 + half))
    assert seeds_table(attention_frame(seeds=(0,))).empty
    assert SEEDS_TITLE in all_tables(attention_frame()) and "Student-t" in SEEDS_TITLE
    # a cell that ran one seed beside cells that ran three: its interval is missing, not zero-width
    runs = attention_frame()
    one = runs[~(runs["params.axis.attention"].eq("softmax") & runs["params.seed"].ne("0"))]
    softmax = seeds_table(one).set_index(["dataset", "attention"]).loc[("imdb", "softmax")]
    assert softmax["seeds"] == 1 and softmax[["std", "ci95_low", "ci95_high"]].isna().all()


def test_paired_difference_of_a_constant_gain_is_exact():
    paired = paired_table(attention_frame()).set_index(["dataset", "attention"])
    assert set(paired.index) == {(t, a) for t in ("imdb", "hyperpartisan")
                                 for a in ("lsh-num_hashes=2", "favor-nb_features=64")}
    lsh = paired.loc[("imdb", "lsh-num_hashes=2")]
    assert lsh["pairs"] == 3 and lsh["metric"] == "test_f1"
    assert lsh["mean_diff"] == pytest.approx(0.05)
    assert (lsh["ci95_low"], lsh["ci95_high"]) == (pytest.approx(0.05), pytest.approx(0.05))
    assert lsh["p_value"] < 1e-6
    assert PAIRED_TITLE in all_tables(attention_frame()) and "Student-t" in PAIRED_TITLE
    assert lsh["epoch_time_ratio"] == pytest.approx(0.5) and lsh["gpu_mem_ratio"] == pytest.approx(0.5)
    assert paired.loc[("hyperpartisan", "favor-nb_features=64"), "mean_diff"] == pytest.approx(-0.10)


def test_paired_pairs_on_seed_and_leaves_p_blank_for_one_pair():
    runs = attention_frame(seeds=(0, 1))
    # drop lsh seed 1 and softmax seed 0: no seed has both, so lsh has no pair; favor keeps both
    unpaired = runs["cell"].str.contains("lsh.*seed=1|softmax.*seed=0")
    paired = paired_table(runs[~unpaired])
    assert set(paired["attention"]) == {"favor-nb_features=64"} and (paired["pairs"] == 1).all()
    assert paired["p_value"].isna().all() and paired["ci95_low"].isna().all()


def test_paired_interval_is_the_t_interval_of_the_differences_and_agrees_with_the_t_test():
    runs = attention_frame()
    lsh = runs["params.attention.kind"] == "lsh"
    noise = np.tile([0.0, 0.02, -0.01], 4)  # per seed, both tasks: differences 0.05, 0.07, 0.04
    runs.loc[lsh, "metrics.test_f1_macro"] += noise[: lsh.sum()]
    row = paired_table(runs).set_index(["dataset", "attention"]).loc[("imdb", "lsh-num_hashes=2")]
    low, high = t_interval([0.05, 0.07, 0.04])
    assert (row["ci95_low"], row["ci95_high"]) == (pytest.approx(low), pytest.approx(high))
    assert row["mean_diff"] == pytest.approx(0.16 / 3)
    # the interval excludes 0 exactly when the two-sided test rejects at 5 %
    assert (row["ci95_low"] > 0) == (row["p_value"] < 0.05)
    assert paired_table(runs[runs["params.attention.kind"] != "softmax"]).empty


def test_attention_table_per_stage_with_an_mlm_stage():
    runs = pd.concat([mlm_frame("mlm"), attention_frame("finetune", tasks=("imdb",))], ignore_index=True)
    table = attention_table(runs)
    assert list(table.columns) == ["stage", "attention", "dataset", "test_f1", "test_f1 sd", "final_val_loss",
                                   "epoch_s_mean", "gpu_MiB", "host_MiB", "cells"]
    mlm = table[table["stage"] == "mlm"].set_index("attention")
    assert mlm.loc["lsh", "final_val_loss"] == pytest.approx(3.55) and np.isnan(mlm.loc["lsh", "test_f1"])
    assert mlm.loc["softmax", "host_MiB"] == 800.0 and mlm.loc["softmax", "cells"] == 2
    finetune = table[table["stage"] == "finetune"].set_index("attention")
    assert finetune.loc["softmax", ["test_f1", "test_f1 sd"]].tolist() == [pytest.approx(0.81), pytest.approx(0.01)]
    assert np.isnan(finetune.loc["softmax", "final_val_loss"])
    paired = paired_table(runs).set_index(["stage", "attention"])
    assert paired.loc[("mlm", "lsh"), "metric"] == "final_val_loss"
    assert paired.loc[("mlm", "lsh"), "mean_diff"] == pytest.approx(0.5)
    assert paired.loc[("finetune", "lsh-num_hashes=2"), "mean_diff"] == pytest.approx(0.05)
    assert "stage" in f1_table(runs).columns and len(f1_table(runs)) == 3  # MLM cells have no F1


def test_pareto_front_keeps_points_nothing_beats():
    cost = [1.0, 2.0, 3.0, 2.0, 4.0, np.nan, 1.0]
    score = [0.5, 0.7, 0.6, 0.7, 0.9, 1.0, 0.4]
    # 2 is beaten by 1 (cheaper, better); 6 by 0; 1 and 3 tie (neither dominates); NaN never counts
    assert pareto_front(cost, score).tolist() == [True, True, False, True, True, False, False]
    assert pareto_front([], []).tolist() == []


def test_pareto_frame_pools_seeds_labels_by_attention_and_skips_the_baseline():
    runs = attention_frame()
    runs.loc[0, "params.kind"] = "tfidf"  # imdb softmax seed 0
    frame = pareto_frame(runs)
    assert list(frame.columns) == ["stage", "label", "dataset", "test_f1", "test_f1 sd", "epoch_s_mean",
                                   "epoch_s_mean sd", "gpu_MiB", "gpu_MiB sd", "host_MiB", "host_MiB sd", "n", "majority"]
    assert len(frame) == 6 and set(frame["label"]) == {"softmax", "lsh-num_hashes=2", "favor-nb_features=64"}
    points = frame.set_index(["dataset", "label"])
    assert points.loc[("imdb", "lsh-num_hashes=2"), ["test_f1", "test_f1 sd", "n"]].tolist() == \
        [pytest.approx(0.86), pytest.approx(0.01), 3]
    assert points.loc[("imdb", "softmax"), "n"] == 2 and points.loc[("imdb", "softmax"), "test_f1"] == pytest.approx(0.815)


def test_pareto_frame_labels_by_cell_without_the_seed_when_attention_does_not_vary():
    runs = attention_frame()
    frame = pareto_frame(runs[runs["params.attention.kind"] == "softmax"])
    assert set(frame["label"]) == {"task=imdb,attention=softmax", "task=hyperpartisan,attention=softmax"}
    assert (frame["n"] == 3).all()


def test_bars_frame_pools_the_seeds_of_each_cell():
    bars = bars_frame(attention_frame()).set_index("label")
    assert len(bars) == 6 and (bars["n"] == 3).all()
    assert bars.loc["task=imdb,attention=softmax", ["test_f1", "test_f1 sd"]].tolist() == \
        [pytest.approx(0.81), pytest.approx(0.01)]
    assert without_seed("seed=2,pooling=cls") == "pooling=cls" and without_seed("a=1,seed=0,b=2") == "a=1,b=2"
    assert without_seed("seed=0") == "seed=0" and without_seed("pooling=cls,seeds=5") == "pooling=cls,seeds=5"
    # a staged cell keeps its stage once; a dict value's commas are not parts
    assert without_seed("ft/seed=1,attention=favor(a=1,b=2)") == "ft/attention=favor(a=1,b=2)"
    assert bars_frame(pd.DataFrame()).empty
