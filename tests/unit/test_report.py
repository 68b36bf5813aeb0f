"""Report tables from a hand-made runs DataFrame (what tracking.fetch_runs returns)."""
import pandas as pd
import pytest

from raygrid.report import all_tables, best_table, f1_table, render, to_markdown


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
    assert list(table.columns[:3]) == ["pooling", "N_freeze", "P_drop"]
    assert set(table.columns[3:]) == {"imdb", "hyperpartisan"}
    assert len(table) == 4  # failed run excluded, seeds averaged
    row = table[(table.pooling == "mean") & (table.N_freeze == "1")].iloc[0]
    assert row["imdb"] == f"{0.5 + 0.2 + 0.01 + 0.005:.4f} ± {0.00707:.4f}"


def test_best_table_selects_on_validation_not_test():
    best = best_table(runs_frame()).set_index("dataset")
    # n_freeze=1 has the higher test score but a much lower validation score
    assert best.loc["imdb", "pooling"] == "mean" and best.loc["imdb", "N_freeze"] == "0"
    assert best.loc["hyperpartisan", "test_f1"] == pytest.approx(0.5 + 0.1 + 0.2 + 0.005)


def test_cells_table_keeps_failed_cells_with_reason():
    cells = all_tables(runs_frame())["cells"]
    assert len(cells) == 17
    assert cells.set_index("cell").loc["broken", "error"] == "CUDA out of memory"


def test_renderers():
    md = render(all_tables(runs_frame()), "md")
    assert "### test F1-macro" in md and "| pooling | N_freeze | P_drop |" in md
    csv = render(all_tables(runs_frame()), "csv")
    assert "# cells\ncell,status" in csv
    assert to_markdown(pd.DataFrame()) == "_(no finished cells)_\n"


def test_baseline_is_the_first_row_and_not_a_selection_candidate():
    runs = runs_frame()
    baseline = {"cell": "tfidf", "status": "FINISHED", "error": "", "params.kind": "tfidf",
                "params.data.dataset": "imdb", "params.seed": "0", "metrics.test_f1_macro": 0.99,
                "metrics.best_val_f1_macro": 0.99}
    runs = pd.concat([runs, pd.DataFrame([baseline])], ignore_index=True)
    table = f1_table(runs)
    assert table.iloc[0]["pooling"] == "TF-IDF+LR" and table.iloc[0]["imdb"] == "0.9900"
    assert pd.isna(table.iloc[0]["hyperpartisan"])  # the baseline ran on imdb only
    assert best_table(runs).set_index("dataset").loc["imdb", "pooling"] == "mean"


def test_attention_table_appears_only_when_attention_varies():
    runs = runs_frame()
    assert "attention variants" not in all_tables(runs)
    runs["params.axis.attention"] = ["softmax", "favor-nb_features=64"] * 8 + [None]
    runs["metrics.epoch_time_s"] = 2.0
    table = all_tables(runs)["attention variants"]
    assert set(table["attention"]) == {"softmax", "favor-nb_features=64"}
    assert set(table["dataset"]) == {"imdb", "hyperpartisan"} and (table["cells"] == 4).all()
