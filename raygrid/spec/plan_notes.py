"""What `raygrid plan` prints beside the cell list: each stage's data splits and attention rules.

So a reader checks a grid against the study's design (research_design.md) without reading every
cell's resolved config: which split policy and max_len each dataset gets, and which semantics each
attention variant with a plan note runs (LSH: shared or separate Q/K, window, self rule, round
combination, mask; the note comes from the variant's record).
"""
from __future__ import annotations

from raygrid.attention.registry import variant_of
from raygrid.spec.grid import Grid


def data_summary(cell) -> str:
    """`hyperpartisan/bypublisher split=study text=study max_len=4096` (TF-IDF: no max_len); a corpus shows
    its rule and layout instead of a split: `wikipedia corpus=study layout=document short=450000x128 no-validation`."""
    data = cell.config.data
    parts = [data.dataset + (f"/{data.subset}" if data.subset else "")]
    if data.dataset in ("wikipedia", "wikitext"):
        parts += [f"corpus={data.corpus_rule}"] * (data.corpus_rule != "none")
        parts += ["no-validation"] * (data.val_fraction == 0)
    else:
        parts.append(f"split={data.split}")
    parts += [f"text={data.text_rule}"] * (data.text_rule != "source")
    if cell.config.kind == "mlm":
        parts.append(f"layout={data.mlm_layout}")
        parts += [f"short={data.short_rows}x{data.short_len}"] * bool(data.short_rows)
    if cell.config.kind != "tfidf":  # TF-IDF reads whole texts
        parts.append(f"max_len={data.max_len}")
    return " ".join(parts)


def settings_lines(grid: Grid) -> list[str]:
    """One line per stage for its data settings and one per distinct attention rule set (with the cell count)."""
    lines = []
    for stage in grid.stage_order or [None]:
        cells = grid.stage_cells(stage)
        label = f"{stage}: " if stage else ""
        datasets = dict.fromkeys(data_summary(cell) for cell in cells)
        lines.append(f"data     {label}{' | '.join(datasets)}")
        rules: dict[str, int] = {}
        for cell in cells:
            record = variant_of(cell.config.attention)
            if record.plan_note is not None:
                rule = f"{record.kind:<8} {label}{record.plan_note(cell.config.attention)}"
                rules[rule] = rules.get(rule, 0) + 1
        lines += [f"{rule} ({count} cells)" for rule, count in rules.items()]
    return lines
