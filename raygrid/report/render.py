"""Tables -> Markdown / CSV / LaTeX text: how raygrid.report.tables's tables are written out.

  to_markdown  one GitHub-flavoured Markdown table (no `tabulate` dependency)
  to_latex     one booktabs `table` environment; tex_escape for any text placed in LaTeX
  render       a dict of titled tables as one document in md, csv or tex
  table_stem   the file-name stem of a table title
"""
from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd

FORMATS = ("md", "csv", "tex")


def table_stem(title: str) -> str:
    """File-name stem of a table title: 'best hyperparameters (chosen ...)' -> 'best_hyperparameters'."""
    return title.split(" (")[0].replace(" ", "_").lower()


def _number(value) -> str:
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return ""
        return f"{value:.4f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (no `tabulate` dependency)."""
    if table.empty:
        return "_(no finished cells)_\n"
    header = [str(c) for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_number(v).replace("|", "\\|") for v in row) + " |"
              for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


# One pass, so the braces a replacement adds are never escaped again; ± becomes math mode.
_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$"}
_TEX_SPECIAL = re.compile("|".join(map(re.escape, _TEX)))


def tex_escape(text) -> str:
    return _TEX_SPECIAL.sub(lambda match: _TEX[match.group()], str(text))


def to_latex(table: pd.DataFrame, title: str) -> str:
    """A booktabs `table` environment (needs \\usepackage{booktabs}); numbers as in Markdown."""
    lines = [r"\begin{table}[ht]", r"\centering", rf"\caption{{{tex_escape(title)}}}",
             rf"\label{{tab:{re.sub(r'[^a-z0-9_-]', '-', table_stem(title))}}}"]
    if table.empty:
        lines.append(r"\emph{(no finished cells)}")
    else:
        align = "".join("r" if pd.api.types.is_numeric_dtype(table[c]) else "l" for c in table.columns)
        lines += [rf"\begin{{tabular}}{{{align}}}", r"\toprule",
                  " & ".join(tex_escape(c) for c in table.columns) + r" \\", r"\midrule"]
        lines += [" & ".join(tex_escape(_number(v)) for v in row) + r" \\" for row in table.itertuples(index=False)]
        lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines + [r"\end{table}"]) + "\n"


def render(tables: dict[str, pd.DataFrame], fmt: str = "md") -> str:
    """All tables as one Markdown document, CSV blocks headed by `# <title>`, or LaTeX (booktabs) tables."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown table format {fmt!r}; use one of {', '.join(FORMATS)}")
    out = io.StringIO()
    if fmt == "tex":
        out.write("% raygrid report: needs \\usepackage{booktabs}\n\n")
    for title, table in tables.items():
        if fmt == "md":
            out.write(f"### {title}\n\n{to_markdown(table)}\n")
        elif fmt == "csv":
            out.write(f"# {title}\n{table.to_csv(index=False)}\n")
        else:
            out.write(f"{to_latex(table, title)}\n")
    return out.getvalue()
