"""The training loop without Ray: freezing over epochs, best checkpoint, test scoring (schedule: test_schedule.py)."""
import copy
import math

import pytest
import torch

from raygrid.spec.config import CellConfig
from raygrid.data.cache import prepare
from raygrid.data.batching import iterate_table
from raygrid.model.encoder import build_classifier, encoder_blocks
from raygrid.training.objectives import Classification
from raygrid.training.train_loop import Loaders, fit
import pyarrow.parquet as pq


def _setup(tiny_checkpoint, tmp_path, **over):
    from tests.conftest import SAMPLE

    raw = {"data": {"dataset": "hyperpartisan", "path": str(SAMPLE), "max_len": 48,
                    "limit": {"train": 24, "validation": 12, "test": 12}},
           "model": {"checkpoint": str(tiny_checkpoint), **over.pop("model", {})},
           "optim": {"lr": 1e-3, "epochs": 3, "batch_size": 8, **over.pop("optim", {})}}
    cfg = CellConfig.model_validate(raw)
    data = prepare(cfg.data, cfg.model.checkpoint, tmp_path, progress=False)
    tables = {s: pq.read_table(data.split_path(s)) for s in ("train", "validation", "test")}
    pad = data.meta["pad_token_id"]
    loaders = Loaders(train=lambda e: iterate_table(tables["train"], 8, pad, shuffle_seed=e),
                      validation=lambda: iterate_table(tables["validation"], 16, pad),
                      test=lambda: iterate_table(tables["test"], 16, pad),
                      steps_per_epoch=math.ceil(24 / 8))
    return cfg, data, loaders


def test_fit_reports_each_epoch_then_test_from_best_weights(tiny_checkpoint, tmp_path):
    cfg, data, loaders = _setup(tiny_checkpoint, tmp_path, model={"n_freeze": 1})
    model = build_classifier(cfg, data.num_labels)
    embeddings_before = model.encoder.embeddings.word_embeddings.weight.detach().clone()
    block1_before = encoder_blocks(model.encoder)[1].attention.self.query.weight.detach().clone()
    reports, frozen_seen = [], []

    def report(metrics, state):
        reports.append((metrics, state))
        frozen_seen.append(torch.equal(model.encoder.embeddings.word_embeddings.weight, embeddings_before))

    final = fit(cfg, model, loaders, Classification(data.num_labels), torch.device("cpu"), report)
    epochs = [m for m, s in reports if s is not None]
    assert [m["epoch"] for m in epochs] == [0, 1, 2]
    assert all({"train_loss", "val_f1_macro", "val_accuracy", "epoch_time_s"} <= m.keys() for m in epochs)
    # exactly the per-epoch metrics raygrid.orchestration.tune_callback logs (metric_names.EPOCH_METRICS) plus the epoch
    assert all(m.keys() == {"epoch", "train_loss", "val_loss", "val_f1_macro", "val_accuracy", "epoch_time_s", "lr"}
               for m in epochs)
    # N_freeze=1 with 3 epochs: embeddings frozen during epoch 0 only (floor(3/2) = 1)
    assert frozen_seen[:3] == [True, False, False]
    assert not torch.equal(encoder_blocks(model.encoder)[1].attention.self.query.weight, block1_before)
    assert reports[-1][1] is None and reports[-1][0]["final"] == 1
    assert final["best_val_f1_macro"] == pytest.approx(max(m["val_f1_macro"] for m in epochs))
    assert 0 <= final["test_f1_macro"] <= 1 and final["tokens_per_s"] > 0 and final["peak_host_mem_mb"] > 0
    assert final["peak_gpu_mem_mb"] == 0.0


def test_fit_resumes_from_a_checkpointed_state(tiny_checkpoint, tmp_path):
    cfg, data, loaders = _setup(tiny_checkpoint, tmp_path)
    states = []
    fit(cfg, build_classifier(cfg, data.num_labels), loaders, Classification(data.num_labels), torch.device("cpu"),
        lambda m, s: states.append((m, copy.deepcopy(s))))
    # resume after epoch 0: only epochs 1 and 2 run again, and they match the uninterrupted run
    resumed = []
    fit(cfg, build_classifier(cfg, data.num_labels), loaders, Classification(data.num_labels), torch.device("cpu"),
        lambda m, s: resumed.append((m, s)), resume=states[0][1])
    assert [m["epoch"] for m, s in resumed if s is not None] == [1, 2]
    assert resumed[0][0]["train_loss"] == pytest.approx(states[1][0]["train_loss"], rel=1e-4)


def _table_setup(tiny_checkpoint, grouped: bool):
    """Synthetic tokenized splits with lengths 8..64 (the cache's layout), batched by table_loaders."""
    import numpy as np
    import pyarrow as pa

    from raygrid.training.loaders import table_loaders

    rng = np.random.default_rng(0)

    def table(rows: int):
        lengths = rng.integers(8, 65, rows)
        return pa.table({"input_ids": [rng.integers(5, 60, n).tolist() for n in lengths],
                         "label": rng.integers(0, 2, rows), "n_tokens": lengths.astype("int32")})

    cfg = CellConfig.model_validate(
        {"data": {"dataset": "local", "path": "unused", "max_len": 64, "group_by_length": grouped},
         "model": {"checkpoint": str(tiny_checkpoint)}, "optim": {"lr": 1e-3, "epochs": 2, "batch_size": 4}})
    tables = {"train": table(40), "validation": table(12), "test": table(12)}
    return cfg, table_loaders(cfg, tables, pad_token_id=0)


@pytest.mark.parametrize("grouped", [True, False])
def test_fit_reports_mean_epoch_time_and_padding_figures(tiny_checkpoint, tmp_path, grouped):
    cfg, loaders = _table_setup(tiny_checkpoint, grouped)
    reports = []
    final = fit(cfg, build_classifier(cfg, 2), loaders, Classification(2),
                torch.device("cpu"), lambda m, s: reports.append(m))
    epoch_times = [m["epoch_time_s"] for m in reports[:-1]]
    assert final["epoch_time_mean_s"] == pytest.approx(sum(epoch_times) / len(epoch_times))
    assert final["train_time_s"] == pytest.approx(sum(epoch_times))
    real, padded = 0, 0
    for batch in loaders.train(0):
        real, padded = real + int(batch["attention_mask"].sum()), padded + batch["attention_mask"].numel()
    assert final["padding_ratio"] == pytest.approx(padded / real, rel=0.05)  # epochs 0 and 1 pad about alike
    assert final["padded_tokens_per_s"] == pytest.approx(final["tokens_per_s"] * final["padding_ratio"])
    assert final["eval_time_s"] > 0 and final["checkpoint_time_s"] >= 0


def test_length_grouped_loaders_pad_less_and_replay_an_epoch_identically(tiny_checkpoint):
    ratios = {}
    for grouped in (True, False):
        _, loaders = _table_setup(tiny_checkpoint, grouped)
        masks = [b["attention_mask"] for b in loaders.train(1)]
        ratios[grouped] = sum(m.numel() for m in masks) / sum(int(m.sum()) for m in masks)
        again = [b["attention_mask"] for b in loaders.train(1)]
        assert all(torch.equal(a, b) for a, b in zip(masks, again)) and len(masks) == len(again)
        assert sum(len(m) for m in masks) == 40 and len(masks) == loaders.steps_per_epoch
    assert ratios[True] < ratios[False]
