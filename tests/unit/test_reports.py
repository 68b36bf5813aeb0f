"""The typed report from a cell's worker to the Tune callbacks: made and read in one place."""
import pickle

import pytest

from raygrid.training import metric_names as M
from raygrid.training.reports import EPOCH, FINAL, KIND_KEY, PROGRESS, CellReport


def test_an_epoch_report_round_trips_through_a_flat_dict_of_scalars():
    fit_dict = {"epoch": 2, M.TRAIN_LOSS: 0.5, M.VAL_F1_MACRO: 0.75, M.LR: 1e-4}
    report = CellReport.of(EPOCH, fit_dict, step=2)
    wire = report.to_wire()
    assert all(isinstance(v, (int, float, str)) for v in wire.values())  # what Tune carries
    tune_result = {**wire, "timestamp": 1700000000, "training_iteration": 3, "date": "2026-12-03"}  # Tune's own keys
    assert CellReport.from_wire(tune_result) == report
    assert report.metrics == {M.TRAIN_LOSS: 0.5, M.VAL_F1_MACRO: 0.75, M.LR: 1e-4} and report.step == 2


def test_a_final_report_keeps_its_strings_as_tags_and_gains_the_checkpoint_path_tune_adds():
    report = CellReport.of(FINAL, {"final": 1, M.TEST_F1_MACRO: 0.6, "precision": "fp32", "weights_in": "ab"})
    report = report.with_tags(weights_out="cd", node_id=None)  # None: not recorded
    back = CellReport.from_wire({**report.to_wire(), "checkpoint_path": "/ck/1"})
    assert back.kind == FINAL and back.metrics == {M.TEST_F1_MACRO: 0.6}
    assert back.tags == {"precision": "fp32", "weights_in": "ab", "weights_out": "cd", "checkpoint_path": "/ck/1"}


def test_reading_keeps_only_the_names_listed_for_the_kind():
    wire = CellReport(PROGRESS, {M.PROGRESS_STEP: 10, M.PROGRESS_ETA_S: 30.0, "made_up": 1.0}, step=10).to_wire()
    assert CellReport.from_wire(wire).metrics == {M.PROGRESS_STEP: 10, M.PROGRESS_ETA_S: 30.0}
    # a metric of another kind is not read as this one's (train_loss belongs to epochs)
    assert CellReport.from_wire({**CellReport(FINAL).to_wire(), M.TRAIN_LOSS: 1.0}).metrics == {}


def test_results_raygrid_did_not_make_are_not_reports():
    assert CellReport.from_wire({"epoch": 0, "final": 1, M.TRAIN_LOSS: 1.0}) is None
    assert CellReport.from_wire({KIND_KEY: "checkpoint"}) is None
    with pytest.raises(ValueError, match="report kind 'done'"):
        CellReport("done")


def test_a_report_pickles_and_is_frozen():
    report = CellReport(PROGRESS, {M.PROGRESS_STEP: 3}, step=3)
    assert pickle.loads(pickle.dumps(report)) == report  # it travels to the driver through Ray
    with pytest.raises(AttributeError):
        report.step = 4
