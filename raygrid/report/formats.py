"""How each report column is written in Markdown and LaTeX: the one place that declares number formats.

The tables (raygrid.report.tables) keep full-precision numbers; only rendering formats them, and CSV
keeps them as they are (machine readable: F1 stays a 0..1 fraction there, as in MLflow).
  column_format  the Format of a column, by name or pattern (first match in COLUMN_FORMATS)
  METRIC_FORMATS per-row formats of statistic columns in tables with a `metric` column (seeds, paired)
  SD_SUFFIX / CI_COLUMNS  column pairs the renderer shows as one cell: `mean ± sd`, `low – high`
F1-macro and accuracy print as the study prints them (grids/reference/study_published.csv): percent
with two decimals, 92.86; differences in percentage points with their sign, +0.31.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from raygrid.report.cells import MAJORITY_MARGIN
from raygrid.training import metric_names as M


@dataclass(frozen=True)
class Format:
    """How the numbers of one column are written (after multiplying by `scale`)."""

    spec: str              # Python format spec: ",.1f", ",.0f", ".1e"
    scale: float = 1.0     # F1 fractions print as percent (x100)
    unit: str = ""         # added to the header when the printed unit differs from the stored one: "imdb (%)"

    def __call__(self, value) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        text = format(float(value) * self.scale, self.spec)
        return "0" + text[2:] if text.startswith("-0") and float(text) == 0 else text  # no "-0.00"


PERCENT = Format(".2f", scale=100, unit="%")            # F1-macro, accuracy: 92.86 (the study's print)
PERCENT_POINTS = Format("+.2f", scale=100, unit="pp")   # a difference of two F1 values: +0.31
SECONDS = Format(",.1f")                                # 39.1
MIB = Format(",.0f")                                    # 1,565
RATE = Format(",.0f")                                   # tokens/s: 12,345
COUNT = Format(",.0f")                                  # seeds, pairs, cells
P_VALUE = Format(".1e")                                 # 1.2e-03
RATIO = Format(".2f")                                   # variant / softmax: 0.40
LOSS = Format(".3f")                                    # cross-entropy: 2.513
LOSS_DIFF = Format("+.3f")
GENERAL = Format(".4g")                                 # anything numeric not declared below

# First match wins; patterns are searched in the column name (re.search, case-insensitive).
COLUMN_FORMATS: tuple[tuple[str, Format], ...] = (
    (r"^p_value$", P_VALUE),
    (r"_ratio$", RATIO),
    (r"Δ$", PERCENT_POINTS),                # compare: ours - published, F1 only
    (r"published$", PERCENT),               # compare: published F1
    (r"tokens(/|_per_)s$", RATE),
    (r"_s(_mean)?$", SECONDS),              # train_s, epoch_s_mean, *_time_s
    (r"_(mib|mb)$", MIB),                   # gpu_MiB, host_MiB, peak_*_mem_mb
    (r"^(seeds|pairs|cells|n)$", COUNT),
    (r"(^|_)f1(_|$)", PERCENT),             # test_f1, val_f1, best_val_f1, test_f1_macro
    (r"(^|_)acc(uracy)?(_|$)", PERCENT),
    (r"loss", LOSS),
)

# The statistic columns of the seeds and paired tables hold the score named in each row's `metric`.
ROW_METRIC_COLUMNS = ("mean", "std", "ci95_low", "ci95_high", "mean_diff")
DIFFERENCE_COLUMNS = ("mean_diff",)
METRIC_FORMATS = {"test_f1": (PERCENT, PERCENT_POINTS), M.FINAL_VAL_LOSS: (LOSS, LOSS_DIFF),
                  M.FINAL_TRAIN_LOSS: (LOSS, LOSS_DIFF)}  # value, difference

F1_TITLE = "test F1-macro"  # raygrid.report.tables.all_tables's title of the F1 table
# Titles of tables whose undeclared numeric columns are all one thing (the F1 table's dataset columns).
TABLE_FORMATS = {F1_TITLE: PERCENT}

SD_SUFFIX = " sd"                        # `imdb` + `imdb sd` print as one cell: 92.86 ± 0.71
CI_COLUMNS = ("ci95_low", "ci95_high")   # print as one cell `95 % CI`: 91.10 – 94.60
CI_HEADER = "95 % CI"

NOTES = {
    "sd": "± sd: sample standard deviation over seeds (a cell with one seed shows its value alone).",
    "ci": "95 % CI: Student-t interval of the mean (n − 1 degrees of freedom; paired table: of the "
          "mean difference), n = seeds or pairs; none for n = 1.",
    "p": "p_value: two-sided paired t-test (scipy.stats.ttest_rel); none for n = 1.",
    "%": "F1-macro and accuracy in %.",
    "pp": "Differences of F1-macro (Δ, mean_diff) in percentage points.",
    "flag": f"majority class: test F1-macro within {100 * MAJORITY_MARGIN:g} points of accuracy / (1 + accuracy), "
            f"the score of a model whose correct predictions all fall in one class (e.g. one that always predicts "
            f"the majority class).",
}


def column_format(column: str, default: Format | None = None) -> Format | None:
    """The declared Format of a column name; `default` (else GENERAL) for an undeclared numeric column."""
    for pattern, fmt in COLUMN_FORMATS:
        if re.search(pattern, column, flags=re.IGNORECASE):
            return fmt
    return default or GENERAL


def row_format(column: str, metric: str) -> Format | None:
    """The format of a statistic column in a row whose score is `metric`; None: not a per-row column."""
    if column not in ROW_METRIC_COLUMNS or metric not in METRIC_FORMATS:
        return None
    value, difference = METRIC_FORMATS[metric]
    return difference if column in DIFFERENCE_COLUMNS else value
