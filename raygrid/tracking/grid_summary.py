"""What a grid's parent run and experiment say about it: counts, the best cell, and the notes the UI shows.

The best cell is chosen on validation, as the study chooses its settings (best validation F1-macro;
the test score is reported, never used to choose), among fine-tuned cells (the TF-IDF baseline is
a reference row, as in the report's best-hyperparameter table); for a dataset with only MLM cells,
the lowest validation loss. One best cell per dataset when the grid spans several datasets. MLflow
shows a run's and an experiment's tag `mlflow.note.content` as their Markdown description.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from raygrid.training.metric_names import (BEST_CELL, BEST_VAL_F1_MACRO, BEST_VAL_LOSS, CELLS_FAILED,
                                           CELLS_FINISHED, CELLS_SKIPPED, CELLS_TOTAL, FINAL_VAL_LOSS, TEST_F1_MACRO)

NOTE = "mlflow.note.content"
TAG_BEST_CELL = "raygrid.best_cell"  # + ".<dataset>" when the grid spans several datasets
# (metric the choice is made on, max or min, metrics reported beside it), tried in order per dataset.
SELECTIONS = ((BEST_VAL_F1_MACRO, "max", (TEST_F1_MACRO,)), (BEST_VAL_LOSS, "min", (FINAL_VAL_LOSS,)))


@dataclass(frozen=True)
class Counts:
    """One `raygrid run`: cells in the grid, and those finished, failed or skipped (finished before) in it."""

    total: int
    finished: int
    failed: int
    skipped: int

    def metrics(self) -> dict[str, float]:
        return {CELLS_TOTAL: self.total, CELLS_FINISHED: self.finished, CELLS_FAILED: self.failed,
                CELLS_SKIPPED: self.skipped}


@dataclass(frozen=True)
class Best:
    """The best cell of a dataset (dataset None: the grid has one), the metric it won on, and its scores."""

    dataset: str | None
    cell: str
    run_id: str
    chosen_by: str
    scores: dict[str, float]

    def _suffix(self) -> str:
        return f".{self.dataset}" if self.dataset else ""

    def tag(self) -> tuple[str, str]:
        return TAG_BEST_CELL + self._suffix(), self.cell

    def metrics(self) -> dict[str, float]:
        """best_cell[.<dataset>].<metric> for the deciding metric and those reported beside it."""
        return {f"{BEST_CELL}{self._suffix()}.{name}": value for name, value in self.scores.items()}


def best_cells(runs) -> list[Best]:
    """The best FINISHED fine-tuned (or MLM) cell per dataset among MLflow `runs` (current cell runs)."""
    groups: dict[str, list] = {}
    for run in runs:
        if run.info.status == "FINISHED" and run.data.params.get("kind") != "tfidf":
            groups.setdefault(run.data.params.get("data.dataset", ""), []).append(run)
    bests = []
    for dataset, group in sorted(groups.items()):
        group = sorted(group, key=lambda r: r.data.tags.get("raygrid.cell", ""))  # ties: the first name wins
        for metric, mode, reported in SELECTIONS:
            scored = [r for r in group if _finite(r.data.metrics.get(metric))]
            if not scored:
                continue
            pick = (max if mode == "max" else min)(scored, key=lambda r: r.data.metrics[metric])
            scores = {name: pick.data.metrics[name] for name in (metric, *reported) if _finite(pick.data.metrics.get(name))}
            bests.append(Best(dataset if len(groups) > 1 else None, pick.data.tags.get("raygrid.cell", ""),
                              pick.info.run_id, metric, scores))
            break
    return bests


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def experiment_note(name: str, description: str, grid_path: str, stages: dict[str, str]) -> str:
    """The experiment's description: the grid's own, its stages', and where the grid file is."""
    lines = [description.strip() or f"raygrid grid `{name}`", "", f"Grid file: `{grid_path}`"]
    if stages:
        lines += ["", "Stages, in the order they run:"]
        lines += [f"- `{stage}`" + (f": {text.strip()}" if text.strip() else "") for stage, text in stages.items()]
    lines += ["", "One child run per cell (params, per-epoch metrics, `config.yaml`); the parent run "
              f"`{name}` holds the grid file, the summary of the last `raygrid run` and the report."]
    return "\n".join(lines)


def parent_note(experiment_note_text: str, counts: Counts | None, bests: list[Best], experiment_id: str) -> str:
    """The parent run's description: the grid's own first, then the last run's counts and best cells,
    then the rest of the experiment's note (the UI shows the first paragraphs before "Show more")."""
    head, _, rest = experiment_note_text.partition("\n\n")
    lines = [head]
    if counts is not None:
        lines += ["", f"**Last `raygrid run`**: {counts.total} cells: {counts.finished} finished, {counts.failed} "
                      f"failed, {counts.skipped} skipped (finished by an earlier run)."]
    for best in bests:
        link = f"[{best.cell}](#/experiments/{experiment_id}/runs/{best.run_id})"
        scores = ", ".join(f"{name} {value:.4g}" for name, value in best.scores.items())
        where = f" for {best.dataset}" if best.dataset else ""
        lines += ["", f"**Best cell{where}** (chosen on {best.chosen_by}): {link}: {scores}."]
    if rest:
        lines += ["", rest]
    if counts is not None:
        lines += ["", "Artifacts: `grid.yaml` (the grid as run), `report/` (the tables: Markdown, LaTeX, CSV), "
                      "`plots/` (the figures)."]
    return "\n".join(lines)


def cell_note(grid_name: str, kind: str, axis_values: dict[str, str]) -> str:
    """A cell run's description: what the cell is within its grid."""
    axes = ", ".join(f"`{k}` = {v}" for k, v in axis_values.items()) or "the grid's base cell"
    return (f"Cell of grid `{grid_name}` ({kind}): {axes}. The complete resolved config is the artifact "
            f"`config.yaml`.")
