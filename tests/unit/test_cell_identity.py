"""Skip-finished follows a cell's resolved config: an override that changes a cell makes it run again."""
from raygrid.orchestration.finished import finished_cells
from raygrid.orchestration.tuner import axis_labels
from raygrid.spec.loader import load_grid
from raygrid.tracking.runs import TAG_CHECKPOINT, TAG_INIT_RUN, TAG_STAGE, GridTracker

QUICKSTART = "grids/quickstart.yaml"


def record(uri, grid, tags_of=lambda cell: {}):
    """What `raygrid run` records for each cell of `grid` that finishes (start_cell logs the config as params)."""
    tracker = GridTracker(uri, grid.name)
    ids = {}
    for cell in grid.cells:
        ids[cell.name] = tracker.start_cell(cell.name, axis_labels(cell), cell.config.model_dump(mode="json"),
                                            tags_of(cell))
        tracker.end_cell(ids[cell.name])
    return tracker, ids


def test_an_override_makes_new_cells_and_rerunning_it_skips_them(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    plain = load_grid(QUICKSTART)
    assert finished_cells(plain, uri).runs == {}  # the grid never ran
    _, first = record(uri, plain)
    assert finished_cells(plain, uri).runs == first
    faster = load_grid(QUICKSTART, overrides=["optim.lr=3e-4"])
    changed = finished_cells(faster, uri)
    assert changed.runs == {} and set(changed.changed) == set(first)
    assert changed.changed[plain.cells[0].name] == "optim.lr: 0.0002 -> 0.0003"
    _, second = record(uri, faster)  # the rerun: new runs supersede the old ones
    assert finished_cells(load_grid(QUICKSTART, overrides=["optim.lr=3e-4"]), uri).runs == second
    # an override that changes nothing a cell records is no change (resources place trials, they are no identity)
    assert finished_cells(load_grid(QUICKSTART, overrides=["optim.lr=3e-4", "resources.max_concurrent_trials=1"]),
                          uri).runs == second
    assert finished_cells(plain, uri).runs == {}  # back to the file's value: those cells run again


def test_setting_a_key_the_run_left_unset_is_a_change(tmp_path):
    """Unset keys are no params (no "None" in MLflow); the run's raygrid.unset tag still tells them apart."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    plain = load_grid(QUICKSTART)
    record(uri, plain)
    limited = finished_cells(load_grid(QUICKSTART, overrides=["data.limit.train=100"]), uri)
    assert limited.runs == {} and limited.changed[plain.cells[0].name] == "data.limit.train: unset -> 100"
    assert set(finished_cells(plain, uri).runs) == {cell.name for cell in plain.cells}


def test_a_moved_local_path_is_the_same_cell_but_another_folder_is_not(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (tmp_path / "a" / "data").mkdir(parents=True)
    (tmp_path / "b" / "data").mkdir(parents=True)
    (tmp_path / "b" / "other").mkdir(parents=True)
    one = load_grid(QUICKSTART, overrides=[f"data.path={tmp_path / 'a' / 'data'}"])
    record(uri, one)
    moved = load_grid(QUICKSTART, overrides=[f"data.path={tmp_path / 'b' / 'data'}"])
    assert set(finished_cells(moved, uri).runs) == {c.name for c in moved.cells}
    other = load_grid(QUICKSTART, overrides=[f"data.path={tmp_path / 'b' / 'other'}"])
    assert finished_cells(other, uri).runs == {}


def test_a_chained_cell_runs_again_when_its_parent_does(tmp_path):
    grid_file = tmp_path / "g.yaml"
    grid_file.write_text("""
name: g
base: {model: {checkpoint: /tmp/ck}, data: {dataset: imdb, path: /tmp/d}}
stages:
  - {name: mlm, base: {kind: mlm, optim: {epochs: 1}}}
  - {name: ft, init: mlm, base: {optim: {epochs: 2}}}
""")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    grid = load_grid(grid_file)
    tracker = GridTracker(uri, "g")
    parent = grid.stage_cells("mlm")[0]
    parent_run = tracker.start_cell(parent.name, {}, parent.config.model_dump(mode="json"), {TAG_STAGE: "mlm"})
    tracker.set_tags(parent_run, {TAG_CHECKPOINT: "/w/1"})
    tracker.end_cell(parent_run)
    child = grid.stage_cells("ft")[0]
    child_run = tracker.start_cell(child.name, {}, child.config.model_dump(mode="json"),
                                   {TAG_STAGE: "ft", TAG_INIT_RUN: parent_run})
    tracker.end_cell(child_run)
    assert finished_cells(grid, uri).runs == {parent.name: parent_run, child.name: child_run}
    # only the parent stage changes, yet the child must follow it
    longer = load_grid(grid_file, overrides=["stages.mlm.optim.epochs=2"])
    assert longer.stage_cells("ft")[0].config == child.config
    found = finished_cells(longer, uri)
    assert found.runs == {} and found.changed[child.name] == f"its parent cell {parent.name} runs again"
    # the parent finished again (another run) without its child: the child's weights are stale
    again = tracker.start_cell(parent.name, {}, parent.config.model_dump(mode="json"), {TAG_STAGE: "mlm"})
    tracker.set_tags(again, {TAG_CHECKPOINT: "/w/2"})
    tracker.end_cell(again)
    found = finished_cells(grid, uri)
    assert found.runs == {parent.name: again} and "finished again since" in found.changed[child.name]
