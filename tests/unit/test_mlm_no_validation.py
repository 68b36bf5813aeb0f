"""An MLM cell without a validation split (the study's Wikipedia stage): fit, its metrics, and the
report and best-cell code that read them."""
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from raygrid.model.encoder import build_classifier, build_masked_lm, weights_fingerprint
from raygrid.report.tables import attention_table, paired_table, scored_cells
from raygrid.tracking.grid_summary import best_cells
from raygrid.training import metric_names as M
from raygrid.training.objectives import Classification
from raygrid.training.train_loop import fit
from tests.unit.test_mlm import _mlm_setup
from tests.unit.test_train_loop import _setup


def test_mlm_fit_without_validation_reports_train_loss_and_keeps_the_last_epoch(tiny_checkpoint, tmp_path):
    cfg, _, loaders, objective = _mlm_setup(tiny_checkpoint, tmp_path, epochs=3)
    loaders.validation = None
    model = build_masked_lm(cfg)
    fresh = weights_fingerprint(model.encoder)
    reports = []
    final = fit(cfg, model, loaders, objective, torch.device("cpu"), lambda m, s: reports.append((m, s)))
    epochs = [m for m, s in reports if s is not None]
    assert [m["epoch"] for m in epochs] == [0, 1, 2]
    assert all(m.keys() == {"epoch", M.TRAIN_LOSS, M.EPOCH_TIME_S, M.LR} for m in epochs)  # no val_*
    assert epochs[-1][M.TRAIN_LOSS] < epochs[0][M.TRAIN_LOSS]
    assert final[M.BEST_EPOCH] == 2 and final[M.FINAL_TRAIN_LOSS] == pytest.approx(epochs[-1][M.TRAIN_LOSS])
    assert not {M.BEST_VAL_LOSS, M.FINAL_VAL_LOSS, M.FINAL_VAL_PERPLEXITY} & final.keys()
    assert final[M.EVAL_TIME_S] == 0.0  # nothing was evaluated
    checkpoint = reports[-2][1]  # the last epoch's resumable state says the same
    assert checkpoint["progress"].best_epoch == 2 and checkpoint["progress"].last_val == {}
    assert weights_fingerprint(model.encoder) != fresh  # the weights passed on are the trained (last) ones


def test_a_resumed_mlm_cell_without_validation_continues(tiny_checkpoint, tmp_path):
    cfg, _, loaders, objective = _mlm_setup(tiny_checkpoint, tmp_path, epochs=2)
    loaders.validation = None
    states = []
    fit(cfg, build_masked_lm(cfg), loaders, objective, torch.device("cpu"), lambda m, s: states.append((m, s)))
    resumed = []
    final = fit(cfg, build_masked_lm(cfg), loaders, objective, torch.device("cpu"),
                lambda m, s: resumed.append(m), resume=states[0][1])
    assert [m["epoch"] for m in resumed[:-1]] == [1] and final[M.BEST_EPOCH] == 1


def test_a_classification_cell_needs_a_validation_split(tiny_checkpoint, tmp_path):
    cfg, data, loaders = _setup(tiny_checkpoint, tmp_path, optim={"epochs": 1})
    loaders.validation = None
    with pytest.raises(ValueError, match="validation split"):
        fit(cfg, build_classifier(cfg, data.num_labels), loaders, Classification(data.num_labels),
            torch.device("cpu"), lambda m, s: None)


def _wiki_runs() -> pd.DataFrame:
    """MLflow runs of two Wikipedia MLM cells without validation (what fetch_runs returns for them)."""
    rows = [{"cell": f"attention={kind}", "status": "FINISHED", "error": "", "stage": "wiki_mlm",
             "params.kind": "mlm", "params.axis.attention": kind, "params.attention.kind": kind, "params.seed": "420",
             "params.data.dataset": "wikipedia", "metrics.final_train_loss": loss, "metrics.epoch_time_mean_s": secs,
             "metrics.peak_gpu_mem_mb": 1000.0, "metrics.peak_host_mem_mb": 500.0}
            for kind, loss, secs in (("softmax", 2.5, 100.0), ("lsh", 2.75, 80.0))]
    return pd.DataFrame(rows)


def test_the_report_scores_them_by_their_final_training_loss():
    runs = _wiki_runs()
    scored = scored_cells(runs)
    assert scored["metric"].tolist() == [M.FINAL_TRAIN_LOSS] * 2 and scored["score"].tolist() == [2.5, 2.75]
    table = attention_table(runs).set_index("attention")
    assert M.FINAL_VAL_LOSS not in table and table.loc["lsh", M.FINAL_TRAIN_LOSS] == 2.75
    assert table.loc["lsh", "epoch_s_mean"] == 80.0  # the stage's cost still reaches the attention table
    paired = paired_table(runs).set_index("attention")
    assert paired.loc["lsh", "metric"] == M.FINAL_TRAIN_LOSS and paired.loc["lsh", "mean_diff"] == pytest.approx(0.25)


def test_no_best_cell_is_chosen_without_a_validation_metric():
    run = SimpleNamespace(info=SimpleNamespace(status="FINISHED", run_id="r1"),
                          data=SimpleNamespace(params={"kind": "mlm", "data.dataset": "wikipedia"},
                                               metrics={M.FINAL_TRAIN_LOSS: 2.5}, tags={"raygrid.cell": "c"}))
    assert best_cells([run]) == []  # chosen on validation only: a training loss does not pick a winner


def test_the_lsh_mask_plot_draws_training_curves_when_there_is_no_validation():
    from raygrid.report.plots import ablation_figure

    train_only = {"True": {M.VAL_LOSS: [], M.TRAIN_LOSS: [(0, 5.0), (1, 4.0)]},
                  "False": {M.VAL_LOSS: [], M.TRAIN_LOSS: [(1, 4.4), (0, 5.1)]}}
    fig = ablation_figure(train_only, "mask_within_chunks", "LSH mask")
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert set(lines) == {"mask_within_chunks=True (train)", "mask_within_chunks=False (train)"}
    assert all(line.get_linestyle() == "-" for line in lines.values())  # the only curves: solid
    assert list(lines["mask_within_chunks=False (train)"].get_ydata()) == [5.1, 4.4]  # sorted by epoch
    assert ablation_figure({"True": train_only["True"]}, "m", "t") is None  # one value alone: nothing to compare
