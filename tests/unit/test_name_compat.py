"""A store recorded under the old cell names (raygrid < 0.2: `attention=favor-feature_map=...`) keeps working:
its finished cells are skipped, not retrained; a rerun supersedes the old run (no duplicate); `select:` and
chained stages find the old runs; plan sees them through its read-only view; the report shows today's names.
"""
import pytest

from raygrid.orchestration.finished import finished_cells
from raygrid.orchestration.parent_links import exported_links
from raygrid.orchestration.plan_status import existing_store, status_lines
from raygrid.report.cells import prepared
from raygrid.spec.config import STAGE_SCHEME, SelectRef
from raygrid.spec.loader import load_grid
from raygrid.spec.names import legacy_cell_name
from raygrid.spec.selection import choose
from raygrid.tracking.runs import TAG_CHECKPOINT, TAG_INIT_RUN, TAG_STAGE, GridTracker, fetch_runs, finished_scores

CHAIN = "grids/quickstart_chain.yaml"


def old_name(cell) -> str:
    """The name raygrid < 0.2 recorded (its rule, kept as raygrid.spec.names.legacy_cell_name)."""
    return f"{cell.stage}/{legacy_cell_name(cell.axis_values)}" if cell.stage else legacy_cell_name(cell.axis_values)


def old_config(cell) -> dict:
    """The config raygrid < 0.2 recorded: a chained cell's checkpoint named its parent by the old name."""
    config = cell.config.model_dump(mode="json")
    if cell.parent is not None:
        config["model"]["checkpoint"] = f"{STAGE_SCHEME}{cell.parent_grid}/{old_name(cell.parent)}"
    return config


@pytest.fixture
def old_store(tmp_path):
    """quickstart_chain run to the end by raygrid < 0.2: every cell FINISHED under its old name."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    grid = load_grid(CHAIN)
    tracker = GridTracker(uri, grid.name)
    ids = {}
    for cell in grid.cells:
        old = old_name(cell)
        labels = {key: legacy_cell_name({key: value}).split("=", 1)[1] for key, value in cell.axis_values.items()}
        tags = {TAG_STAGE: cell.stage}
        if cell.parent is not None:
            tags[TAG_INIT_RUN] = ids[cell.parent.name]
        ids[cell.name] = tracker.start_cell(old, labels, old_config(cell), tags)
        metrics = {"final_val_loss": 7.0} if cell.config.kind == "mlm" else {"test_f1_macro": 0.8, "test_accuracy": 0.8}
        tracker.log_metrics(ids[cell.name], metrics, step=0)
        if cell.config.kind == "mlm":
            tracker.set_tags(ids[cell.name], {TAG_CHECKPOINT: f"s3://bucket/{cell.stage}/{len(ids)}"})
        tracker.end_cell(ids[cell.name])
    return uri, grid, tracker, ids


def test_the_old_store_has_the_old_names(old_store):
    uri, grid, _, _ = old_store
    recorded = set(fetch_runs(uri, grid.name)["cell"])
    assert "tapt/attention=favor-feature_map=hyperbolic-nb_features=64" in recorded
    assert not recorded & {cell.name for cell in grid.cells if cell.former_names}


def test_finished_cells_recorded_under_old_names_are_skipped_not_retrained(old_store, tmp_path):
    uri, grid, _, ids = old_store
    found = finished_cells(grid, uri)
    assert found.runs == ids and found.changed == {}  # every cell, chained ones included (their parent link too)
    store = existing_store(tmp_path)  # plan, read-only
    assert status_lines(grid, store, tmp_path / "mlflow.db") == \
        [f"MLflow {uri}: all 6 cells finished; `raygrid run` would skip them all"]
    # a real change still counts: the old runs of the changed cells are not taken for them
    faster = finished_cells(load_grid(CHAIN, overrides=["stages.finetune.optim.lr=1e-4"]), uri)
    assert set(faster.changed) == {cell.name for cell in grid.stage_cells("finetune")}


def test_a_rerun_supersedes_the_old_run_so_no_cell_is_listed_twice(old_store):
    uri, grid, tracker, ids = old_store
    favor = grid.stage_cells("finetune")[1]
    assert favor.former_names == (old_name(favor),)
    new = tracker.start_cell(favor.name, {}, favor.config.model_dump(mode="json"), {TAG_STAGE: "finetune"},
                             former=favor.former_names)
    runs = fetch_runs(uri, grid.name)
    assert len(runs) == 6 and new in set(runs["run_id"]) and ids[favor.name] not in set(runs["run_id"])
    assert tracker.client.get_run(ids[favor.name]).data.tags["raygrid.superseded"] == "true"


def test_stage_parents_and_select_find_runs_under_old_names(old_store):
    uri, grid, tracker, ids = old_store
    children = grid.stage_cells("finetune")
    links = exported_links(tracker, children)
    assert {cell.name: links[cell.name].run_id for cell in children} == {c.name: ids[c.parent.name] for c in children}
    scores = finished_scores(uri, grid.name, "test_f1_macro")  # keyed by the recorded (old) names
    favor = children[1]
    assert favor.name not in scores and old_name(favor) in scores
    select = SelectRef(grid=CHAIN, stage="finetune", by="test_f1_macro", keys=["model.pooling"])
    choice = choose(favor, children, scores, select, "sel.yaml: select", grid.name, uri)
    assert choice.cell == favor.name and choice.run_id == ids[favor.name]


def test_the_report_shows_todays_names_in_grid_order(old_store):
    uri, grid, _, _ = old_store
    runs = prepared(fetch_runs(uri, grid.name), [cell.name for cell in grid.cells])
    assert list(runs["cell"]) == [cell.name for cell in grid.cells]
    assert "favor(feature_map=hyperbolic,nb_features=64)" in set(runs["params.axis.attention"])
