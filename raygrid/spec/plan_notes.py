"""What `raygrid plan` prints beside the cell list: each stage's data splits and LSH rules.

So a reader checks a grid against the study's design (research_design.md) without reading every
cell's resolved config: which split policy and max_len each dataset gets, and which LSH semantics
(shared or separate Q/K, window, self rule, round combination, mask) each stage runs.
"""
from __future__ import annotations

from raygrid.spec.grid import Grid


def data_summary(cell) -> str:
    """`hyperpartisan/bypublisher split=study max_len=4096` (corpora: no split policy; TF-IDF: no max_len)."""
    data = cell.config.data
    name = data.dataset + (f"/{data.subset}" if data.subset else "")
    split = "" if data.dataset in ("wikipedia", "wikitext") else f" split={data.split}"
    length = "" if cell.config.kind == "tfidf" else f" max_len={data.max_len}"  # TF-IDF reads whole texts
    return f"{name}{split}{length}"


def lsh_summary(params) -> str:
    """`qk=shared window=-1..+1 self=masked rounds=mean mask_within_chunks=False`."""
    self_rule = "masked" if params.exclude_self else "kept"
    return (f"qk={params.qk} window=-{params.look_backward}..+{params.look_forward} self={self_rule} "
            f"rounds={params.round_combine} mask_within_chunks={params.mask_within_chunks}")


def settings_lines(grid: Grid) -> list[str]:
    """One line per stage for its data settings and one per distinct LSH rule set (with the cell count)."""
    lines = []
    for stage in grid.stage_order or [None]:
        cells = grid.stage_cells(stage)
        label = f"{stage}: " if stage else ""
        datasets = dict.fromkeys(data_summary(cell) for cell in cells)
        lines.append(f"data     {label}{' | '.join(datasets)}")
        rules: dict[str, int] = {}
        for cell in cells:
            if cell.config.attention.kind == "lsh":
                rule = lsh_summary(cell.config.attention)
                rules[rule] = rules.get(rule, 0) + 1
        lines += [f"lsh      {label}{rule} ({count} cells)" for rule, count in rules.items()]
    return lines
