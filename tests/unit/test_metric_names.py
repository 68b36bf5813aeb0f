"""Metric names are defined once: every number a producer emits is one the Tune callback forwards to MLflow."""
import pyarrow as pa
import torch

from raygrid.model.encoder import build_classifier, build_masked_lm
from raygrid.training import metric_names as M, reports
from raygrid.training.baseline import tfidf_lr
from raygrid.training.objectives import Classification
from raygrid.training.train_loop import fit
from tests.unit.test_mlm import _mlm_setup
from tests.unit.test_train_loop import _setup

# Keys of a report that are not metrics: the epoch index (the MLflow step) and the end-of-cell flag.
CONTROL = {"epoch", "final"}


def numbers(metrics: dict) -> set[str]:
    return {k for k, v in metrics.items() if isinstance(v, (int, float))} - CONTROL


def test_reports_forward_the_names_defined_once():
    assert reports._NAMES == {reports.EPOCH: M.EPOCH_METRICS, reports.PROGRESS: M.PROGRESS_METRICS,
                              reports.FINAL: M.CELL_METRICS}
    kinds = [set(M.EPOCH_METRICS), set(M.CELL_METRICS), set(M.PROGRESS_METRICS)]
    assert sum(map(len, kinds)) == len(set().union(*kinds))  # each name is logged at one kind of step only
    names = [v for k, v in vars(M).items() if k.isupper() and isinstance(v, str) and not k.endswith("PREFIX")]
    assert len(names) == len(set(names)), "two constants spell the same metric"


def test_classification_and_mlm_cells_emit_only_listed_metrics(tiny_checkpoint, tmp_path):
    cfg, data, loaders = _setup(tiny_checkpoint, tmp_path / "cls", optim={"epochs": 1})
    reports = []
    fit(cfg, build_classifier(cfg, data.num_labels), loaders, Classification(data.num_labels), torch.device("cpu"),
        lambda m, s: reports.append(m))
    cfg, data, loaders, objective = _mlm_setup(tiny_checkpoint, tmp_path / "mlm", epochs=1)
    fit(cfg, build_masked_lm(cfg), loaders, objective, torch.device("cpu"), lambda m, s: reports.append(m))
    epochs = [m for m in reports if "epoch" in m]
    finals = [m for m in reports if m.get("final")]
    assert len(epochs) == 2 and len(finals) == 2
    emitted_epoch = set().union(*map(numbers, epochs))
    emitted_final = set().union(*map(numbers, finals))
    assert emitted_epoch <= set(M.EPOCH_METRICS), emitted_epoch - set(M.EPOCH_METRICS)
    assert emitted_final <= set(M.CELL_METRICS), emitted_final - set(M.CELL_METRICS)
    # both objectives' validation metrics (prefix + evaluation key) are among the names
    assert {M.VAL_F1_MACRO, M.VAL_ACCURACY, M.VAL_MLM_ACCURACY, M.VAL_MLM_PERPLEXITY} <= emitted_epoch
    assert {M.TEST_F1_MACRO, M.FINAL_VAL_LOSS, M.TOKENS_PER_S, M.EVAL_TIME_S} <= emitted_final


def test_the_baseline_emits_only_listed_metrics():
    table = pa.table({"text": ["good movie", "bad movie", "good plot", "bad plot"] * 3, "label": [1, 0, 1, 0] * 3})
    scores = tfidf_lr(table, table, table)
    assert numbers(scores) <= set(M.EPOCH_METRICS) | set(M.CELL_METRICS)
