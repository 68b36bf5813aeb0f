"""Pinned numbers: tiny seeded cells whose losses and scores must not move unless training is meant to change.

Trends ("the loss goes down") let a silent change in training through: a reordered RNG draw, a redraw
that no longer happens, a mask applied differently. These cells train a tiny random BERT (tests/conftest.py)
for a few steps on seeded synthetic token rows, framework-free (`fit` with table loaders), one cell per
attention variant and setting, and compare the final figures with numbers recorded from the code.

When a change is MEANT to alter training, re-record:
`RAYGRID_PRINT_PINNED=1 pytest -s tests/unit/test_pinned_numbers.py` prints each cell's figures in PINNED's
format; say in the commit why they moved.
"""
from __future__ import annotations

import copy
import os

import numpy as np
import pyarrow as pa
import pytest
import torch

from raygrid.data.cache import load_tokenizer
from raygrid.spec.config import CellConfig
from raygrid.training.cell_model import build_cell_model
from raygrid.training.loaders import table_loaders
from raygrid.training.train_loop import fit

REL = 1e-5  # CPU fp32: far above run-to-run noise, below the 1e-4..1e-3 by which the variants differ here

# (cell kind, attention params) -> the figures `fit` returned when recorded.
CELLS = {
    "softmax": ("finetune", {"kind": "softmax"}),
    "favor-positive": ("finetune", {"kind": "favor", "feature_map": "positive", "nb_features": 16}),
    "favor-hyperbolic-redraw": ("finetune", {"kind": "favor", "feature_map": "hyperbolic", "nb_features": 16,
                                             "redraw_interval": 2}),
    "lsh-mask": ("finetune", {"kind": "lsh", "num_hashes": 2, "chunk_size": 16, "mask_within_chunks": True}),
    "lsh-nomask": ("finetune", {"kind": "lsh", "num_hashes": 2, "chunk_size": 16, "mask_within_chunks": False}),
    "lsh-shared-maxlen": ("finetune", {"kind": "lsh", "qk": "shared", "num_hashes": 2, "chunk_size": 16,
                                       "num_buckets": "max_len"}),
    "linear": ("finetune", {"kind": "linear"}),
    "mlm-softmax": ("mlm", {"kind": "softmax"}),
    "mlm-lsh": ("mlm", {"kind": "lsh", "num_hashes": 2, "chunk_size": 16}),
}

PINNED = {
    'softmax': {'train_loss_0': 0.8272480666637421, 'train_loss_1': 0.7562932223081589,
        'val_loss_1': 0.719836950302124, 'test_loss': 0.8015888532002767,
        'test_f1_macro': 0.3684210526315789, 'best_val_f1_macro': 0.4},
    'favor-positive': {'train_loss_0': 0.8271592855453491, 'train_loss_1': 0.75606469810009,
        'val_loss_1': 0.7192858854929606, 'test_loss': 0.8011132081349691,
        'test_f1_macro': 0.3684210526315789, 'best_val_f1_macro': 0.4},
    'favor-hyperbolic-redraw': {'train_loss_0': 0.8272659331560135, 'train_loss_1': 0.7564406394958496,
        'val_loss_1': 0.7200937271118164, 'test_loss': 0.8017063140869141,
        'test_f1_macro': 0.3684210526315789, 'best_val_f1_macro': 0.4},
    'lsh-mask': {'train_loss_0': 0.8260580152273178, 'train_loss_1': 0.7556905746459961,
        'val_loss_1': 0.7240234216054281, 'test_loss': 0.8023529847462972,
        'test_f1_macro': 0.3684210526315789, 'best_val_f1_macro': 0.4},
    'lsh-nomask': {'train_loss_0': 0.826734185218811, 'train_loss_1': 0.7563727498054504,
        'val_loss_1': 0.7189516226450602, 'test_loss': 0.8010125160217285,
        'test_f1_macro': 0.3684210526315789, 'best_val_f1_macro': 0.4},
    'lsh-shared-maxlen': {'train_loss_0': 0.7921669781208038, 'train_loss_1': 0.7393332272768021,
        'val_loss_1': 0.6349693139394125, 'test_loss': 0.6899855931599935,
        'test_f1_macro': 0.3684210526315789, 'best_val_f1_macro': 0.4},
    'linear': {'train_loss_0': 0.8272750377655029, 'train_loss_1': 0.7562215775251389,
        'val_loss_1': 0.7194818655649821, 'test_loss': 0.8014939626057943,
        'test_f1_macro': 0.3684210526315789, 'best_val_f1_macro': 0.4},
    'mlm-softmax': {'train_loss_0': 4.908614158630371, 'train_loss_1': 4.542191028594971,
        'val_loss_1': 4.428916055648053},
    'mlm-lsh': {'train_loss_0': 4.908544540405273, 'train_loss_1': 4.541428923606873,
        'val_loss_1': 4.428597372086322},
}


def _tables(kind: str) -> dict[str, pa.Table]:
    """Seeded token rows of lengths 8..64 (ids past the tiny vocabulary's special tokens)."""
    rng = np.random.default_rng(7)

    def table(rows: int) -> pa.Table:
        lengths = rng.integers(8, 65, rows)
        columns = {"input_ids": [[2, *rng.integers(5, 60, n - 2).tolist(), 3] for n in lengths],
                   "n_tokens": lengths.astype("int32")}
        if kind == "finetune":
            columns["label"] = rng.integers(0, 2, rows)
        return pa.table(columns)

    tables = {"train": table(32), "validation": table(12)}
    if kind == "finetune":
        tables["test"] = table(12)
    return tables


class _Data:
    """What build_cell_model reads of the prepared data (the tiny checkpoint's tokenizer)."""

    num_labels = 2

    def __init__(self, checkpoint):
        tokenizer = load_tokenizer(str(checkpoint))
        self.meta = {"vocab_size": len(tokenizer), "mask_token_id": tokenizer.mask_token_id,
                     "special_ids": tokenizer.all_special_ids, "pad_token_id": tokenizer.pad_token_id}


def train_cell(name: str, checkpoint, resume: dict | None = None, states: list | None = None) -> dict:
    """The cell's figures; `states` collects each epoch's checkpoint state, `resume` starts from one."""
    kind, attention = CELLS[name]
    scratch = attention.get("qk") == "shared"  # Q = K replaces a checkpoint's key weights: from scratch only
    cfg = CellConfig.model_validate(
        {"kind": kind, "seed": 3, "attention": attention,
         "data": {"dataset": "local", "path": "unused", "max_len": 64},
         "model": {"checkpoint": str(checkpoint), "from_scratch": scratch,
                   "config_overrides": {"hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.0}},
         "optim": {"lr": 1e-2, "epochs": 2, "batch_size": 8, "precision": "fp32", "warmup_ratio": 0.25}})
    torch.manual_seed(0)  # the cell seeds its model; this fixes anything drawn before (none expected)
    model, objective = build_cell_model(cfg, _Data(checkpoint))
    loaders = table_loaders(cfg, _tables(kind), pad_token_id=0)
    epochs, states = {}, states if states is not None else []

    def report(metrics, state):
        if state is not None:
            epochs[metrics["epoch"]] = metrics
            states.append(copy.deepcopy(state))

    final = fit(cfg, model, loaders, objective, torch.device("cpu"), report, resume=resume)
    figures = {"train_loss_1": epochs[1]["train_loss"], "val_loss_1": epochs[1]["val_loss"]}
    if 0 in epochs:
        figures["train_loss_0"] = epochs[0]["train_loss"]
    if kind == "finetune":
        figures.update(test_loss=final["test_loss"], test_f1_macro=final["test_f1_macro"],
                       best_val_f1_macro=final["best_val_f1_macro"])
    return figures


@pytest.mark.parametrize("name", list(CELLS))
def test_a_tiny_seeded_cell_trains_to_its_pinned_numbers(tiny_checkpoint, name):
    figures = train_cell(name, tiny_checkpoint)
    if os.environ.get("RAYGRID_PRINT_PINNED"):
        print(f"\n    {name!r}: {{{', '.join(f'{k!r}: {v!r}' for k, v in figures.items())}}},")
        if name not in PINNED:
            pytest.skip("recording")
    assert figures == pytest.approx(PINNED[name], rel=REL, abs=1e-7)


@pytest.mark.parametrize("name", ["lsh-nomask", "mlm-lsh", "favor-hyperbolic-redraw"])
def test_a_cell_resumed_after_its_first_epoch_ends_on_the_same_numbers(tiny_checkpoint, name):
    """Checkpoints carry the attention's counters (LSH: training forwards; FAVOR+: the redrawn projection)."""
    states = []
    train_cell(name, tiny_checkpoint, states=states)
    resumed = train_cell(name, tiny_checkpoint, resume=states[0])
    assert "train_loss_0" not in resumed
    assert resumed == pytest.approx({k: v for k, v in PINNED[name].items() if k != "train_loss_0"}, rel=REL, abs=1e-7)


def test_every_registered_variant_has_a_pinned_cell():
    from raygrid.attention import kinds

    assert set(kinds()) <= {attention["kind"] for _, attention in CELLS.values()}


def test_pinned_cells_differ_from_each_other():
    """The cells really train different things (a variant that silently fell back to softmax would match it)."""
    losses = [figures["train_loss_1"] for figures in PINNED.values()]
    assert len(set(losses)) == len(losses)
