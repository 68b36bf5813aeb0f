"""What `raygrid run` records from Tune events, and the refusals before launch (Ray imported, never started)."""
from types import SimpleNamespace

import pytest
import torch

from raygrid.spec.config import CellConfig, MlmConfig, Resources
from raygrid.spec.grid import GridError
from raygrid.spec.loader import load_grid
from raygrid.orchestration.parent_links import ParentWeights as _ParentWeights, check_parents as _check_parents
from raygrid.orchestration.payload import TrialPayload
from raygrid.orchestration.summary import RunSummary
from raygrid.orchestration.tune_callback import MlflowCells as _MlflowCells, storage_uri as _storage_uri
from raygrid.training.reports import EPOCH, FINAL, CellReport
from raygrid.training.objectives import MaskedLanguageModel, mask_tokens


class FakeTracker:
    def __init__(self):
        self.metrics, self.tags, self.ended = [], {}, {}

    def start_cell(self, name, axis, config, tags=None, former=()):
        self.tags[name] = dict(tags or {})
        return name

    def log_metrics(self, run_id, metrics, step):
        self.metrics.append((run_id, step, dict(metrics)))

    def set_tags(self, run_id, tags):
        self.tags[run_id].update(tags)

    def end_cell(self, run_id, error=None):
        self.ended[run_id] = error


def trial(name, kind="mlm", storage="/runs/ray/train"):
    """A Tune trial as the callback sees it: its config holds the serialized TrialPayload."""
    cell = CellConfig(kind=kind, data={"dataset": "imdb", "path": "/d"}, model={"checkpoint": "/ck"})
    payload = TrialPayload(name=name, config=cell, axis={}, resources=Resources(), use_gpu=False, storage_path=storage)
    return SimpleNamespace(config={"cell": payload.to_tune()}, error_file=None, get_error=lambda: None)


def callback(names):
    cells = {n: SimpleNamespace(stage="tapt", name=n, tags={}, former_names=()) for n in names}
    links = {"b": _ParentWeights("g", "wiki/x", "run-1", "/runs/ray/train/ckpt")}
    tracker, summary = FakeTracker(), RunSummary()
    return _MlflowCells(tracker, cells, links, summary), tracker, summary


def test_lineage_tags_and_exported_weights_are_recorded_once():
    cb, tracker, summary = callback(["a", "b"])
    for name in ("a", "b"):
        cb.on_trial_start(0, [], trial(name))
    assert tracker.tags["b"]["raygrid.init_run_id"] == "run-1" and tracker.tags["a"] == {"raygrid.stage": "tapt"}
    epoch = CellReport.of(EPOCH, {"val_loss": 3.0, "train_loss": 4.0, "junk": "x", "junk_number": 1.0}, step=0)
    cb.on_trial_result(0, [], trial("b"), {**epoch.to_wire(), "timestamp": 17})  # Tune adds its own keys
    final = CellReport.of(FINAL, {"final_val_loss": 2.5, "weights_in": "aa", "weights_out": "bb",
                                  "precision": "fp32"}).to_wire()
    final["checkpoint_path"] = "/ck/1"  # added by Ray's TuneReportCallback
    cb.on_trial_result(0, [], trial("b"), final)
    cb.on_trial_result(0, [], trial("b"), final)  # a restarted worker reports its final metrics again
    assert [m for m in tracker.metrics if m[0] == "b"] == [("b", 0, {"val_loss": 3.0, "train_loss": 4.0}),
                                                            ("b", 0, {"final_val_loss": 2.5})]
    assert tracker.tags["b"]["raygrid.checkpoint"] == "/ck/1" and tracker.tags["b"]["raygrid.weights_out"] == "bb"
    assert tracker.tags["b"]["raygrid.precision"] == "fp32"  # what ran (a string: a tag, not a metric)
    # an mlm cell that ends without exported weights is a failure, not a finished parent
    cb.on_trial_result(0, [], trial("a"), CellReport(FINAL, {"final_val_loss": 2.0}).to_wire())
    for name in ("a", "b"):
        cb.on_trial_complete(0, [], trial(name))
    assert summary.finished == ["b"] and tracker.ended["b"] is None
    assert "without exported weights" in tracker.ended["a"] and "a" in summary.failed


def test_storage_uri_puts_back_the_scheme_ray_drops():
    assert _storage_uri("s3://bucket/runs/train", "bucket/runs/train/t/checkpoint_1") == \
        "s3://bucket/runs/train/t/checkpoint_1"
    assert _storage_uri("/local/runs/train", "/local/runs/train/t/checkpoint_1") == "/local/runs/train/t/checkpoint_1"
    assert _storage_uri("gs://b/x", "gs://b/x/c") == "gs://b/x/c"


def two_stage_grid(folder, ft_extra: str = ""):
    """An MLM stage and a fine-tuning stage that starts from it."""
    path = folder / "g.yaml"
    path.write_text(f"""
name: g
base: {{model: {{checkpoint: /tmp/ck}}, data: {{dataset: imdb, path: /tmp/d}}}}
stages:
  - {{name: mlm, base: {{kind: mlm}}}}
  - {{name: ft, init: mlm{ft_extra}}}
""")
    return path


def test_a_parent_that_finished_earlier_must_still_have_its_weights(tmp_path, monkeypatch):
    grid = load_grid(two_stage_grid(tmp_path))
    child = grid.stage_cells("ft")

    class Finished:
        def __init__(self, uri, name, create=True):
            pass

        def exported_weights(self, cell):
            return ("run-9", str(tmp_path / "gone"))

    monkeypatch.setattr("raygrid.orchestration.parent_links.GridTracker", Finished)
    _check_parents(grid, grid.cells, "sqlite:///x")  # parent pending in this run: it will export first
    with pytest.raises(GridError, match="weights of parent cell mlm/base are gone"):
        _check_parents(grid, child, "sqlite:///x")
    (tmp_path / "gone").mkdir()
    _check_parents(grid, child, "sqlite:///x")


def test_data_parallel_workers_and_epochs_draw_different_masks():
    ids = torch.randint(5, 100, (8, 64))
    mask = torch.ones_like(ids)

    def masks(rank, seed=0, eval_seed=0, epoch=0):
        objective = MaskedLanguageModel(MlmConfig(), 4, 100, [0, 1, 2, 3, 4], seed, rank=rank, eval_seed=eval_seed)
        objective.start_epoch(epoch, torch.device("cpu"))
        return mask_tokens(ids, mask, objective, objective.generator)[1]

    assert not torch.equal(masks(0), masks(1)) and torch.equal(masks(1), masks(1))
    assert not torch.equal(masks(0, epoch=0), masks(0, epoch=1))


def test_an_empty_mlm_validation_split_is_an_error_not_a_perfect_score():
    objective = MaskedLanguageModel(MlmConfig(), 4, 100, [0, 1, 2, 3, 4], 0)
    with pytest.raises(ValueError, match="validation split predicts no token"):
        objective.evaluate(torch.nn.Identity(), [], torch.device("cpu"), False)


def test_parents_are_looked_up_once_per_grid_and_cell_and_refusals_name_the_stage(tmp_path, monkeypatch):
    grid_file = two_stage_grid(tmp_path, ", axes: {seed: [0, 1, 2]}")
    children = load_grid(grid_file).stage_cells("ft")
    opened, queried = [], []

    class Finished:
        def __init__(self, uri, name, create=True):
            opened.append(name)

        def exported_weights(self, cell):
            queried.append(cell)
            return ("run-9", str(tmp_path))

    monkeypatch.setattr("raygrid.orchestration.parent_links.GridTracker", Finished)
    links = _check_parents(load_grid(grid_file), children, "sqlite:///x")
    assert opened == ["g"] and queried == ["mlm/base"]
    assert links == {c.name: _ParentWeights("g", "mlm/base", "run-9", str(tmp_path)) for c in children}
    monkeypatch.setattr(Finished, "exported_weights", lambda self, cell: None)
    with pytest.raises(GridError, match=r"g.yaml: stages.ft.init: parent cell mlm/base of grid g has no finished"):
        _check_parents(load_grid(grid_file), children, "sqlite:///x")


def test_tracker_supersedes_and_finds_runs_of_exactly_the_named_cell(tmp_path):
    from raygrid.tracking.runs import TAG_CHECKPOINT, GridTracker

    tracker = GridTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "g")
    names = ["ft/task=hp,seed=0", "ft/task=hp,seed=01", "it's=a", "both'\"=b"]
    first = {name: tracker.start_cell(name, {}, {}) for name in names}
    for name in names:
        tracker.set_tags(first[name], {TAG_CHECKPOINT: f"/w/{name}"})
        tracker.end_cell(first[name])
    assert {n: tracker.exported_weights(n) for n in names} == {n: (first[n], f"/w/{n}") for n in names}
    retry = tracker.start_cell(names[0], {}, {})  # supersedes the first run of that cell only
    assert [r.info.run_id for r in tracker.cell_runs(names[0])] == [retry]
    assert tracker.exported_weights(names[0]) is None
    assert {r.info.run_id for r in tracker.cell_runs()} == {retry, *(first[n] for n in names[1:])}


def test_the_run_summary_is_logged_and_a_failing_report_only_warns(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from raygrid.orchestration.launch import _summarize
    from raygrid.tracking.runs import GridTracker

    def broken(uri, name, order=None):
        raise RuntimeError("no plots today")

    monkeypatch.setattr("raygrid.orchestration.launch.log_to_parent", broken)
    grid = load_grid(two_stage_grid(tmp_path, ", axes: {seed: [0, 1, 2]}"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = GridTracker(uri, grid.name)
    lines = []
    _summarize(tracker, grid, RunSummary(skipped=["mlm/base"], finished=["ft/seed=0"], failed={"ft/seed=1": "x"}),
               uri, lines.append)
    assert lines == [f"warning: the report was not logged to MLflow (RuntimeError: no plots today); "
                     f"`raygrid report {grid.path} --save DIR` writes it"]
    metrics = MlflowClient(uri).get_run(tracker.parent_id).data.metrics
    assert metrics == {"cells_total": 4, "cells_finished": 1, "cells_failed": 1, "cells_skipped": 1}


def test_progress_reaches_mlflow_as_step_metrics_of_a_running_cell_only(monkeypatch):
    from raygrid.orchestration.progress_relay import INTERVAL_ENV, ProgressRelay, progress_interval_s
    from raygrid.training import metric_names as M
    from raygrid.training.progress import ProgressFigures
    from raygrid.training.reports import PROGRESS

    cb, tracker, _ = callback(["a", "b"])
    cb.on_trial_start(0, [], trial("a", kind="finetune"))
    relay = ProgressRelay([cb], interval_s=5.0)
    wire = CellReport(PROGRESS, ProgressFigures(40, 100, 900.0, 12.0).metrics(), step=40).to_wire()
    relay.deliver([("a", wire), ("b", wire), ("a", {"not": "a report"})])  # b never started: dropped
    assert tracker.metrics == [("a", 40, {M.PROGRESS_STEP: 40, M.PROGRESS_STEPS_TOTAL: 100,
                                          M.PROGRESS_TOKENS_PER_S: 900.0, M.PROGRESS_ETA_S: 12.0})]
    cb.on_trial_result(0, [], trial("a", kind="finetune"), CellReport(FINAL, {"test_f1_macro": 0.5}).to_wire())
    relay.deliver([("a", wire)])  # late, after the cell's final metrics: dropped
    assert len(tracker.metrics) == 2
    monkeypatch.setenv(INTERVAL_ENV, "2.5")
    assert progress_interval_s() == 2.5 and ProgressRelay([]).interval_s == 2.5
    for bad in ("0", "soon"):
        monkeypatch.setenv(INTERVAL_ENV, bad)
        with pytest.raises(ValueError, match=r"\$RAYGRID_PROGRESS_S: '.*' is not a positive number"):
            progress_interval_s()
    monkeypatch.delenv(INTERVAL_ENV)
    assert progress_interval_s() == 30.0
