"""Rendering of the report tables as Markdown, CSV and LaTeX (booktabs) text."""
import pandas as pd
import pytest

from raygrid.report.render import render, tex_escape, to_latex, to_markdown
from raygrid.report.tables import all_tables, f1_table
from tests.unit.test_report import runs_frame


def test_renderers():
    md = render(all_tables(runs_frame()), "md")
    assert "### test F1-macro" in md and "| pooling | N_freeze | P_drop |" in md
    csv = render(all_tables(runs_frame()), "csv")
    assert "# cells\ncell,status" in csv
    assert to_markdown(pd.DataFrame()) == "_(no finished cells)_\n"


def test_tex_escapes_special_characters_and_renders_plus_minus_as_math():
    assert tex_escape("a_b & 50% #1 $x {y} ~z ^w \\v") == \
        r"a\_b \& 50\% \#1 \$x \{y\} \textasciitilde{}z \textasciicircum{}w \textbackslash{}v"
    assert tex_escape("0.7100 ± 0.0100") == r"0.7100 $\pm$ 0.0100"


def test_latex_tables_are_booktabs_with_captions():
    tables = all_tables(runs_frame())
    tex = render(tables, "tex")
    assert tex.count(r"\begin{tabular}") == len(tables) == tex.count(r"\bottomrule")
    assert r"\caption{test F1-macro}" in tex and r"\label{tab:best_hyperparameters}" in tex
    table = to_latex(f1_table(runs_frame()), "F1 & friends_1")
    lines = table.splitlines()
    assert lines[:3] == [r"\begin{table}[ht]", r"\centering", r"\caption{F1 \& friends\_1}"]
    assert lines[4] == r"\begin{tabular}{lllll}" and lines[5] == r"\toprule" and lines[7] == r"\midrule"
    assert lines[6] == r"pooling & N\_freeze & P\_drop & hyperpartisan & imdb \\"
    assert r"0.7150 $\pm$ 0.0071 \\" in table  # mean, n_freeze 1, imdb
    body = lines[8:-3]
    assert len(body) == 4 and all(row.count(" & ") == 4 and row.endswith(r" \\") for row in body)
    assert r"\emph{(no finished cells)}" in to_latex(pd.DataFrame(), "x")
    with pytest.raises(ValueError, match="tex"):
        render(tables, "html")
