"""Tables -> Markdown / CSV / LaTeX text: how raygrid.report.tables's tables are written out.

  displayed    a table's headers, cell texts, alignment and footnotes, formatted as raygrid.report.formats declares
  to_markdown  one GitHub-flavoured Markdown table, numbers right-aligned (`---:`); no `tabulate` dependency
  to_latex     one booktabs `table` environment, numbers in `r` columns; tex_escape for any text placed in LaTeX
  render       a dict of titled tables as one document in md, csv (full precision, unformatted) or tex
  table_stem   the file-name stem of a table title
"""
from __future__ import annotations

import io
import numbers
import re
from dataclasses import dataclass, field

import pandas as pd

from raygrid.report import formats
from raygrid.report.formats import CI_COLUMNS, SD_SUFFIX, Format

FORMATS = ("md", "csv", "tex")
_NUMBER = re.compile(r"^[+-]?(\d[\d,]*)?\.?\d+(e[+-]?\d+)?$", re.IGNORECASE)


def table_stem(title: str) -> str:
    """File-name stem of a table title: 'best hyperparameters (chosen ...)' -> 'best_hyperparameters'."""
    return title.split(" (")[0].replace(" ", "_").lower()


@dataclass
class Displayed:
    """A table as printed: one header and one text per cell, right-aligned columns, footnotes."""

    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)   # rows x headers
    right: list[bool] = field(default_factory=list)       # per header: a number column
    notes: list[str] = field(default_factory=list)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool)  # numpy floats and ints too


def _numeric_column(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _looks_numeric(texts: list[str]) -> bool:
    """Text columns of numbers (MLflow params such as N_freeze "1") are right-aligned as well."""
    filled = [t for t in texts if t]
    return bool(filled) and all(_NUMBER.match(t) for t in filled)


def _shown_with_partner(column: str, columns: list[str]) -> bool:
    """`imdb sd` is printed inside `imdb` (mean ± sd), `ci95_high` inside `ci95_low` (low – high)."""
    if column.endswith(SD_SUFFIX) and column[: -len(SD_SUFFIX)] in columns:
        return True
    return column == CI_COLUMNS[1] and CI_COLUMNS[0] in columns


def displayed(table: pd.DataFrame, title: str = "") -> Displayed:
    """Headers, cell texts, alignment and notes of `table`, each number formatted once, here."""
    columns = [str(c) for c in table.columns]
    records = table.to_dict("records")
    default = formats.TABLE_FORMATS.get(title)
    used: set[str] = set()
    out = Displayed()
    for column in columns:
        if _shown_with_partner(column, columns):
            continue
        if column == CI_COLUMNS[0] and CI_COLUMNS[1] in columns:
            header, texts = formats.CI_HEADER, [_ci_text(r) for r in records]
            used |= {"ci"} | {_unit(r) for r in records}
            out.right.append(True)
        else:
            fmt = formats.column_format(column, default)
            sd = column + SD_SUFFIX if column + SD_SUFFIX in columns else None
            texts = [_cell(r, column, fmt, sd) for r in records]
            if sd and any(" ± " in t for t in texts):
                used.add("sd")
            numeric = _numeric_column(table[column]) or any(_is_number(r[column]) for r in records)
            per_row = "metric" in columns and column in formats.ROW_METRIC_COLUMNS
            if numeric:
                used |= {_unit(r, column) for r in records} if per_row else {fmt.unit}
            header = f"{column} ({fmt.unit})" if numeric and fmt.unit and not per_row else column
            if column == "p_value":
                used.add("p")
            if column == "flag" and any(texts):
                used.add("flag")
            out.right.append(numeric or sd is not None or _looks_numeric(texts))
        out.headers.append(header)
        out.rows.append(texts)
    out.rows = [list(row) for row in zip(*out.rows)] if out.rows else []
    if "pp" in used:
        used.add("%")
    out.notes = [formats.NOTES[key] for key in ("sd", "ci", "p", "%", "pp", "flag") if key in used]
    return out


def _unit(record: dict, column: str = "mean") -> str:
    """The unit of a row's statistics (`column` in the seeds or paired table), from its `metric`."""
    fmt = formats.row_format(column, str(record.get("metric", "")))
    return fmt.unit if fmt else ""


def _cell(record: dict, column: str, fmt: Format, sd: str | None) -> str:
    """One cell: a number in its column's (or its row metric's) format, `mean ± sd`, or the text as it is."""
    value = record[column]
    if column == "metric" and _unit(record):
        return f"{value} ({_unit(record)})"  # the unit of this row's statistics
    if not _is_number(value):
        return "" if pd.api.types.is_scalar(value) and pd.isna(value) else str(value)
    fmt = formats.row_format(column, str(record.get("metric", ""))) or fmt
    text = fmt(value)
    if sd is not None and text and _is_number(record[sd]) and record[sd] == record[sd]:
        text += " ± " + Format(fmt.spec.lstrip("+"), fmt.scale)(record[sd])
    return text


def _ci_text(record: dict) -> str:
    low, high = record[CI_COLUMNS[0]], record[CI_COLUMNS[1]]
    if not (_is_number(low) and _is_number(high)) or low != low or high != high:
        return ""  # one seed or one pair: no interval, rather than a zero-width one
    fmt = formats.row_format(CI_COLUMNS[0], str(record.get("metric", ""))) or formats.column_format(CI_COLUMNS[0])
    return f"{fmt(low)} – {fmt(high)}"


def to_markdown(table: pd.DataFrame, title: str = "") -> str:
    """A GitHub-flavoured Markdown table: text left, numbers right (`---:`), columns padded; notes below."""
    if table.empty:
        return "_(no finished cells)_\n"
    shown = displayed(table, title)
    cells = [[text.replace("|", "\\|") for text in row] for row in [shown.headers] + shown.rows]
    widths = [max(3, *(len(row[i]) for row in cells)) for i in range(len(shown.headers))]

    def line(row: list[str]) -> str:
        return "| " + " | ".join(t.rjust(w) if r else t.ljust(w) for t, w, r in zip(row, widths, shown.right)) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ":" if r else "-" * (w + 2) for w, r in zip(widths, shown.right)) + "|"
    text = "\n".join([line(cells[0]), rule] + [line(row) for row in cells[1:]]) + "\n"
    return text + ("\n" + " ".join(shown.notes) + "\n" if shown.notes else "")


# One pass, so the braces a replacement adds are never escaped again; ± and Δ become math mode.
_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "Δ": r"$\Delta$",
        "–": "--", "−": "-"}
_TEX_SPECIAL = re.compile("|".join(map(re.escape, _TEX)))


def tex_escape(text) -> str:
    return _TEX_SPECIAL.sub(lambda match: _TEX[match.group()], str(text))


def to_latex(table: pd.DataFrame, title: str) -> str:
    """A booktabs `table` environment (needs \\usepackage{booktabs}); numbers as in Markdown, in `r` columns."""
    lines = [r"\begin{table}[ht]", r"\centering", rf"\caption{{{tex_escape(title)}}}",
             rf"\label{{tab:{re.sub(r'[^a-z0-9_-]', '-', table_stem(title))}}}"]
    if table.empty:
        lines.append(r"\emph{(no finished cells)}")
    else:
        shown = displayed(table, title)
        align = "".join("r" if right else "l" for right in shown.right)
        lines += [rf"\begin{{tabular}}{{{align}}}", r"\toprule",
                  " & ".join(tex_escape(h) for h in shown.headers) + r" \\", r"\midrule"]
        lines += [" & ".join(tex_escape(t) for t in row) + r" \\" for row in shown.rows]
        lines += [r"\bottomrule", r"\end{tabular}"]
        if shown.notes:
            lines += [r"\par\smallskip", rf"{{\footnotesize {tex_escape(' '.join(shown.notes))}\par}}"]
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
            out.write(f"### {title}\n\n{to_markdown(table, title)}\n")
        elif fmt == "csv":
            out.write(f"# {title}\n{table.to_csv(index=False)}\n")  # full precision: for machines
        else:
            out.write(f"{to_latex(table, title)}\n")
    return out.getvalue()
