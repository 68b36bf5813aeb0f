"""Published numbers beside ours: reading the reference, which row each figure stands beside, the differences."""
from pathlib import Path

import pandas as pd
import pytest

from raygrid.report.compare import add_published, load_reference
from raygrid.report.render import to_latex, to_markdown
from raygrid.report.tables import all_tables

REFERENCE = Path(__file__).resolve().parents[2] / "grids" / "reference" / "study_published.csv"


def run(cell, dataset, test, val, kind="softmax", label=None, pooling="cls", subset="bypublisher", cell_kind=None):
    row = {"cell": cell, "status": "FINISHED", "error": "", "stage": "", "params.data.dataset": dataset,
           "params.data.subset": subset if dataset == "hyperpartisan" else "None", "params.attention.kind": kind,
           "params.model.pooling": pooling, "params.model.n_freeze": "0", "params.model.p_drop": "0.1",
           "params.seed": "0", "params.kind": cell_kind or "finetune", "metrics.test_f1_macro": test,
           "metrics.best_val_f1_macro": val}
    if label is not None:
        row["params.axis.attention"] = label
    return row


def test_the_shipped_reference_is_the_studys_published_table():
    reference = load_reference(REFERENCE).set_index(["dataset", "variant"])
    assert len(reference) == 12 and set(reference["metric"]) == {"test_f1_macro_pct"}
    assert reference.loc[("hyperpartisan/bypublisher", "best:lsh"), "published"] == pytest.approx(0.6537)
    assert reference.loc[("imdb", "tfidf"), "published"] == pytest.approx(0.8950)
    assert reference.loc[("arxiv", "best:favor"), "published"] == pytest.approx(0.8653)


def test_f1_table_sets_tfidf_and_the_validation_choice_beside_the_published_values():
    runs = pd.DataFrame([run("t", "imdb", 0.88, None, cell_kind="tfidf"),
                         run("a", "imdb", 0.95, 0.80, pooling="cls"),   # best test, worse validation
                         run("b", "imdb", 0.90, 0.85, pooling="mean")])  # the validation choice
    tables = add_published(all_tables(runs), runs, load_reference(REFERENCE))
    table = tables["test F1-macro"].set_index("pooling")
    assert list(table.columns) == ["N_freeze", "P_drop", "imdb", "imdb published", "imdb Δ"]
    assert table.loc["TF-IDF+LR", "imdb Δ"] == pytest.approx(0.88 - 0.8950)
    assert table.loc["mean", "imdb published"] == pytest.approx(0.9286)
    assert table.loc["mean", "imdb Δ"] == pytest.approx(0.90 - 0.9286)
    assert pd.isna(table.loc["cls", "imdb published"])
    assert set(tables["published reference"]["variant"]) == {"tfidf", "softmax"}
    # printed as the study prints it: percent, differences in signed percentage points
    md = to_markdown(tables["test F1-macro"], "test F1-macro")
    assert "| imdb (%) | imdb published (%) | imdb Δ (pp) |" in md
    assert "|    90.00 |              92.86 |       -2.86 |" in md and "|    88.00 |              89.50 |       -1.50 |" in md
    assert r"imdb $\Delta$ (pp)" in to_latex(tables["test F1-macro"], "test F1-macro")


def test_published_columns_follow_the_spread_of_our_seeds():
    runs = pd.DataFrame([run("a", "imdb", 0.90, 0.85), {**run("b", "imdb", 0.92, 0.85), "params.seed": "1"}])
    table = add_published(all_tables(runs), runs, load_reference(REFERENCE))["test F1-macro"]
    assert list(table.columns) == ["pooling", "N_freeze", "P_drop", "imdb", "imdb sd", "imdb published", "imdb Δ"]
    assert table.loc[0, "imdb Δ"] == pytest.approx(0.91 - 0.9286)
    assert "91.00 ± 1.41 |              92.86 |       -1.86 |" in to_markdown(table, "test F1-macro")


def test_attention_table_marks_the_best_variant_of_each_kind_and_checks_the_subset():
    runs = pd.DataFrame([run("s", "hyperpartisan", 0.60, 0.6, label="softmax"),
                         run("l1", "hyperpartisan", 0.66, 0.6, kind="lsh", label="lsh-c=64"),
                         run("l2", "hyperpartisan", 0.62, 0.7, kind="lsh", label="lsh-c=128"),
                         run("f", "hyperpartisan", 0.50, 0.5, kind="favor", label="favor-m=64")])
    tables = add_published(all_tables(runs), runs, load_reference(REFERENCE))
    table = tables["attention variants"].set_index("attention")
    assert table.loc["lsh-c=64", "published"] == pytest.approx(0.6537)  # best LSH by test F1
    assert table.loc["lsh-c=64", "Δ"] == pytest.approx(0.66 - 0.6537)
    assert pd.isna(table.loc["lsh-c=128", "published"])
    assert table.loc["softmax", "Δ"] == pytest.approx(0.60 - 0.6455)
    assert table.loc["favor-m=64", "published"] == pytest.approx(0.5930)
    byarticle = runs.assign(**{"params.data.subset": "byarticle"})
    tables = add_published(all_tables(byarticle), byarticle, load_reference(REFERENCE))
    assert tables["attention variants"]["published"].isna().all()  # by-publisher figures never meet by-article runs
    assert tables["published reference"].empty


@pytest.mark.parametrize("text, message", [
    ("dataset,model,variant,metric,value\n", "column source is missing"),
    ("dataset,model,variant,metric,value,source\nimdb,m,softmax,accuracy,1,x\n", "row 1: metric 'accuracy'"),
    ("dataset,model,variant,metric,value,source\nimdb,m,softmax,test_f1_macro,high,x\n", "row 1: value 'high'"),
])
def test_a_bad_reference_file_is_named_with_its_row(tmp_path, text, message):
    path = tmp_path / "ref.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as err:
        load_reference(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
