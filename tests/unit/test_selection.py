"""`select:`: load-time key checks, the per-task choice, ties, refusals, and the values applied to cells."""
from pathlib import Path

import pytest

from raygrid.spec.grid import GridError
from raygrid.spec.loader import load_grid
from raygrid.spec.selection import apply_choice, choose, selection_lines

SOURCE = """
name: exp1
base: {model: {checkpoint: /tmp/ckpt}, optim: {epochs: 2}}
stages:
  - name: ft
    axes:
      task: [{label: hp, set: {data: {dataset: hyperpartisan, path: /tmp/hp}}},
             {label: imdb, set: {data: {dataset: imdb, path: /tmp/imdb}}}]
      model.pooling: [cls, mean]
      model.n_freeze: [0, 1]
"""
CHILD = """
name: exp2
base: {model: {checkpoint: /tmp/ckpt}, optim: {epochs: 2}}
stages:
  - name: attn
    select: {grid: exp1.yaml, stage: ft, keys: [model.pooling, model.n_freeze]}
    axes:
      task: [{label: hp, set: {data: {dataset: hyperpartisan, path: /tmp/hp}}},
             {label: imdb, set: {data: {dataset: imdb, path: /tmp/imdb}}}]
      attention: [{kind: softmax}, {kind: lsh}]
"""


@pytest.fixture
def grids(tmp_path):
    (tmp_path / "exp1.yaml").write_text(SOURCE)
    (tmp_path / "exp2.yaml").write_text(CHILD)
    return load_grid(tmp_path / "exp1.yaml"), load_grid(tmp_path / "exp2.yaml")


def scores_for(source, values: dict[str, float]) -> dict[str, tuple[str, float]]:
    return {cell.name: (f"run-{i}", values[cell.name]) for i, cell in enumerate(source.cells) if cell.name in values}


def test_each_task_takes_its_own_best_cell_and_ties_go_to_the_first_listed(grids):
    source, child = grids
    select = child.spec.stages[0].select
    names = [c.name for c in source.cells]  # ft/task=hp,pooling=cls,n_freeze=0 ... in axis order
    values = {name: 0.5 for name in names}
    values["ft/task=hp,pooling=mean,n_freeze=1"] = 0.9
    values["ft/task=imdb,pooling=cls,n_freeze=1"] = 0.8
    values["ft/task=imdb,pooling=mean,n_freeze=0"] = 0.8  # a tie: the first listed (cls, 1) wins
    scores = scores_for(source, values)
    picks = {}
    for cell in child.cells:
        choice = choose(cell, source.stage_cells("ft"), scores, select, "where", "exp1", "uri")
        picks[cell.name] = (choice.values, choice.cell, choice.score)
    assert picks["attn/task=hp,attention=lsh"] == ({"model.pooling": "mean", "model.n_freeze": 1},
                                                   "ft/task=hp,pooling=mean,n_freeze=1", 0.9)
    assert picks["attn/task=imdb,attention=softmax"][1] == "ft/task=imdb,pooling=cls,n_freeze=1"
    low = choose(child.cells[0], source.stage_cells("ft"), scores, select.model_copy(update={"mode": "min"}),
                 "where", "exp1", "uri")
    assert low.cell == "ft/task=hp,pooling=cls,n_freeze=0"  # lowest, first of the equal 0.5s


def test_chosen_values_and_their_source_land_on_the_cell(grids):
    source, child = grids
    scores = scores_for(source, {c.name: float(i) for i, c in enumerate(source.cells)})
    cell = child.cells[0]  # task=hp: the last hp cell (mean, 1) scores highest
    choice = choose(cell, source.stage_cells("ft"), scores, child.spec.stages[0].select, "w", "exp1", "uri")
    applied = apply_choice(cell, choice, "w")
    assert choice.summary() == ("model.pooling=mean, model.n_freeze=1 <- ft/task=hp,pooling=mean,n_freeze=1 "
                                "(run run-3, best_val_f1_macro=3)")  # the line raygrid plan prints
    assert (applied.config.model.pooling, applied.config.model.n_freeze) == ("mean", 1)
    assert applied.name == cell.name and applied.config.attention == cell.config.attention
    assert applied.tags == {"raygrid.select_grid": "exp1", "raygrid.select_cell": "ft/task=hp,pooling=mean,n_freeze=1",
                            "raygrid.select_run_id": "run-3", "raygrid.select_by": "best_val_f1_macro=3",
                            "raygrid.select.model.pooling": "mean", "raygrid.select.model.n_freeze": "1"}


def test_an_unfinished_source_cell_is_refused_naming_select(grids):
    source, child = grids
    scores = scores_for(source, {c.name: 0.5 for c in source.cells if "n_freeze=1" not in c.name})
    with pytest.raises(GridError, match=r"exp2.yaml: stages.attn.select: grid exp1 has not finished cell "
                                        r"ft/task=hp,pooling=cls,n_freeze=1 \(metric best_val_f1_macro\)"):
        choose(child.cells[0], source.stage_cells("ft"), scores, child.spec.stages[0].select,
               f"{child.path}: stages.attn.select", "exp1", "uri")


def test_without_a_store_plan_says_pending_and_keeps_the_base_values(grids):
    _, child = grids  # (refusal at run against a real store: tests/integration/test_select_run.py)
    same, lines = selection_lines(child, None, lambda grid, metric: {})
    assert same is child and lines[-1].startswith("select   pending")
    assert lines[0] == "select   attn: model.pooling, model.n_freeze from exp1.yaml stage ft, max best_val_f1_macro"


@pytest.mark.parametrize("keys, message", [
    ("[attention]", "stages.attn.select.keys: attention is an axis of this stage"),
    ("[model.checkpoint]", "stages.attn.select.keys: model.checkpoint is set by init"),
    ("[model.poolin]", "stages.attn.select.keys: model.poolin is not a cell setting"),
])
def test_keys_are_checked_when_the_grid_loads(tmp_path: Path, keys, message):
    (tmp_path / "exp2.yaml").write_text(CHILD.replace("[model.pooling, model.n_freeze]", keys))
    with pytest.raises(GridError, match=message.replace(".", r"\.")):
        load_grid(tmp_path / "exp2.yaml")


def test_a_source_stage_that_does_not_exist_is_named_when_the_grid_loads(grids, tmp_path):
    (tmp_path / "exp2.yaml").write_text(CHILD.replace("stage: ft", "stage: nope"))
    with pytest.raises(GridError, match=r"stages.attn.select.stage: grid exp1.yaml has no stage 'nope'"):
        load_grid(tmp_path / "exp2.yaml")


def test_a_staged_grid_keeps_select_inside_its_stages(tmp_path):
    (tmp_path / "exp2.yaml").write_text(CHILD + "select: {grid: exp1.yaml, keys: [model.pooling]}\n")
    with pytest.raises(GridError, match="select: a staged grid puts select inside the stage"):
        load_grid(tmp_path / "exp2.yaml")
