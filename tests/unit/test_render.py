"""Rendering of the report tables as Markdown, CSV and LaTeX (booktabs) text: one format per column."""
import pandas as pd
import pytest

from raygrid.report.formats import PERCENT, column_format
from raygrid.report.render import displayed, render, tex_escape, to_latex, to_markdown
from raygrid.report.tables import F1_TITLE, PAIRED_TITLE, SEEDS_TITLE, all_tables, f1_table
from tests.unit.test_report import attention_frame, runs_frame


def markdown_rows(text: str) -> list[list[str]]:
    """The cells of a Markdown table, padding kept (to see the alignment)."""
    return [line.split("|")[1:-1] for line in text.splitlines() if line.startswith("|")]


def test_renderers():
    md = render(all_tables(runs_frame()), "md")
    assert "### test F1-macro" in md and "| pooling | N_freeze | P_drop |" in md
    csv = render(all_tables(runs_frame()), "csv")
    assert "# cells\ncell,status" in csv
    assert to_markdown(pd.DataFrame()) == "_(no finished cells)_\n"


def test_each_column_has_its_own_format():
    cells = pd.DataFrame({"cell": ["a", "b"], "train_s": [39.1423, 1234.56], "epoch_s_mean": [9.96, 10.04],
                          "gpu_MiB": [0.0, 20480.4], "host_MiB": [1565.2, 987.0], "tokens/s": [12345.6, 987.2],
                          "test_f1": [0.92861, 0.5], "test_acc": [0.9, 1.0], "final_val_loss": [2.51349, 3.0],
                          "p_value": [0.0012345, 0.5], "epoch_time_ratio": [0.4012, 1.0], "pairs": [3, 10],
                          "other": [0.123456, 12345.678]})
    shown = displayed(cells)
    first = dict(zip(shown.headers, shown.rows[0]))
    second = dict(zip(shown.headers, shown.rows[1]))
    assert first == {"cell": "a", "train_s": "39.1", "epoch_s_mean": "10.0", "gpu_MiB": "0", "host_MiB": "1,565",
                     "tokens/s": "12,346", "test_f1 (%)": "92.86", "test_acc (%)": "90.00",
                     "final_val_loss": "2.513", "p_value": "1.2e-03", "epoch_time_ratio": "0.40", "pairs": "3",
                     "other": "0.1235"}
    assert second["train_s"] == "1,234.6" and second["gpu_MiB"] == "20,480" and second["other"] == "1.235e+04"
    assert shown.right == [False] + [True] * 12
    assert any("in %" in note for note in shown.notes)


def test_column_formats_are_declared_by_name_and_pattern():
    assert column_format("peak_gpu_mem_mb")(1565.4) == "1,565" and column_format("checkpoint_time_s")(3.14) == "3.1"
    assert column_format("best_val_f1") is PERCENT and column_format("imdb Δ")(-0.0123) == "-1.23"
    assert column_format("imdb Δ")(0.0031) == "+0.31" and column_format("imdb published")(0.9286) == "92.86"
    assert column_format("imdb", default=PERCENT) is PERCENT and column_format("test_f1")(float("nan")) == ""
    assert column_format("mean_diff_s")(-0.04) == "0.0"  # never "-0.0"


def test_markdown_right_aligns_numbers_and_pads_columns():
    md = to_markdown(f1_table(runs_frame()), F1_TITLE)
    rows = markdown_rows(md)
    assert [c.strip() for c in rows[0]] == ["pooling", "N_freeze", "P_drop", "imdb (%)", "hyperpartisan (%)"]
    assert rows[1] == ["---------", "---------:", "-------:", "-------------:", "------------------:"]
    mean_row = next(r for r in rows if r[0].strip() == "mean" and r[1].strip() == "1")
    assert mean_row[3] == " 71.50 ± 0.71 " and mean_row[1] == "        1 " and mean_row[0] == " mean    "  # numbers right, text left
    assert len({len("|".join(r)) for r in rows}) == 1  # every line as wide: readable as plain text too
    assert "± sd: sample standard deviation over seeds" in md


def test_one_seed_shows_no_spread_and_no_interval():
    runs = attention_frame()
    runs = runs[~(runs["params.axis.attention"].eq("softmax") & runs["params.seed"].ne("0"))]  # softmax: 1 seed
    tables = all_tables(runs)
    seeds = markdown_rows(to_markdown(tables[SEEDS_TITLE], SEEDS_TITLE))
    header = [c.strip() for c in seeds[0]]
    assert header == ["dataset", "attention", "metric", "seeds", "mean", "std", "95 % CI"]
    rows = {(r[0].strip(), r[1].strip()): [c.strip() for c in r] for r in seeds[2:]}
    assert rows[("imdb", "softmax")][3:] == ["1", "80.00", "", ""]
    assert rows[("imdb", "lsh-num_hashes=2")][2:] == ["test_f1 (%)", "3", "86.00", "1.00", "83.52 – 88.48"]
    f1 = {r[3].strip(): r[4].strip() for r in markdown_rows(to_markdown(tables[F1_TITLE], F1_TITLE))[2:]}
    assert f1["softmax"] == "80.00" and f1["lsh-num_hashes=2"] == "86.00 ± 1.00"


def test_paired_table_prints_differences_in_points_and_p_in_scientific_notation():
    runs = attention_frame()
    lsh = runs["params.attention.kind"] == "lsh"
    runs.loc[lsh, "metrics.test_f1_macro"] += [0.0, 0.02, -0.01] * 2
    md = to_markdown(all_tables(runs)[PAIRED_TITLE], PAIRED_TITLE)
    rows = {(r[0].strip(), r[1].strip()): [c.strip() for c in r] for r in markdown_rows(md)[2:]}
    header = [c.strip() for c in markdown_rows(md)[0]]
    lsh_row = dict(zip(header, rows[("imdb", "lsh-num_hashes=2")]))
    assert lsh_row["mean_diff"] == "+5.33" and lsh_row["95 % CI"] == "1.54 – 9.13"
    # differences 0.05, 0.07, 0.04: t = 6.05 on 2 degrees of freedom
    assert lsh_row["p_value"] == "2.6e-02" and lsh_row["epoch_time_ratio"] == "0.50"
    assert "Student-t interval" in md and "paired t-test" in md and "percentage points" in md


def test_csv_keeps_full_precision_and_separate_columns():
    csv = render({F1_TITLE: f1_table(runs_frame())}, "csv")
    lines = csv.splitlines()
    assert lines[1] == "pooling,N_freeze,P_drop,imdb,imdb sd,hyperpartisan,hyperpartisan sd"  # datasets as they come
    assert "mean,1,0.1,0.715,0.007071067811865481,0.8150000000000001,0.007071067811865481" in lines and "±" not in csv


def test_tex_escapes_special_characters_and_renders_symbols_as_math():
    assert tex_escape("a_b & 50% #1 $x {y} ~z ^w \\v") == \
        r"a\_b \& 50\% \#1 \$x \{y\} \textasciitilde{}z \textasciicircum{}w \textbackslash{}v"
    assert tex_escape("71.00 ± 1.00") == r"71.00 $\pm$ 1.00"
    assert tex_escape("imdb Δ") == r"imdb $\Delta$" and tex_escape("1.5 – 2.5") == "1.5 -- 2.5"


def test_latex_tables_are_booktabs_with_captions_and_right_aligned_numbers():
    tables = all_tables(runs_frame())
    tex = render(tables, "tex")
    assert tex.count(r"\begin{tabular}") == len(tables) == tex.count(r"\bottomrule")
    assert r"\caption{test F1-macro}" in tex and r"\label{tab:best_hyperparameters}" in tex
    table = to_latex(f1_table(runs_frame()), F1_TITLE)
    lines = table.splitlines()
    assert lines[:3] == [r"\begin{table}[ht]", r"\centering", r"\caption{test F1-macro}"]
    assert lines[4] == r"\begin{tabular}{lrrrr}" and lines[5] == r"\toprule" and lines[7] == r"\midrule"
    assert lines[6] == r"pooling & N\_freeze & P\_drop & imdb (\%) & hyperpartisan (\%) \\"
    assert r"mean & 1 & 0.1 & 71.50 $\pm$ 0.71 & 81.50 $\pm$ 0.71 \\" in table
    body = lines[8:lines.index(r"\bottomrule")]
    assert len(body) == 4 and all(row.count(" & ") == 4 and row.endswith(r" \\") for row in body)
    assert r"{\footnotesize $\pm$ sd: sample standard deviation" in table
    assert r"\caption{F1 \& friends\_1}" in to_latex(f1_table(runs_frame()), "F1 & friends_1")
    assert r"\emph{(no finished cells)}" in to_latex(pd.DataFrame(), "x")
    with pytest.raises(ValueError, match="tex"):
        render(tables, "html")
