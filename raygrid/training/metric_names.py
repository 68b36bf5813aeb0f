"""Every metric name a cell reports, defined once (torch-free).

Producers (raygrid.training.train_loop, the Ray trial in raygrid.orchestration.trial) write these
keys (in a raygrid.training.reports.CellReport); raygrid.orchestration.tune_callback forwards
exactly EPOCH_METRICS (logged at step = epoch), PROGRESS_METRICS (at step = optimizer step) and
CELL_METRICS (logged once per cell) to MLflow and drops anything else; raygrid.tracking and the
report read them back as `metrics.<name>`. A name missing here is never recorded, so a unit test
checks that what the producers emit is listed.
"""
from __future__ import annotations

# --- per epoch (step = epoch) ------------------------------------------------------------------
TRAIN_LOSS = "train_loss"  # mean loss per batch over the epoch
VAL_LOSS = "val_loss"
# Validation metrics are the objective's evaluation keys behind its prefix
# (raygrid.training.objectives: `metric_prefix` + key); the ones each objective returns:
VAL_PREFIX, VAL_MLM_PREFIX = "val_", "val_mlm_"
VAL_F1_MACRO = "val_f1_macro"
VAL_ACCURACY = "val_accuracy"
VAL_MLM_ACCURACY = "val_mlm_accuracy"
VAL_MLM_PERPLEXITY = "val_mlm_perplexity"
EPOCH_TIME_S = "epoch_time_s"
LR = "lr"  # the learning rate after the epoch's last step

# --- per cell (logged once, at the end) --------------------------------------------------------
# classification (and the TF-IDF baseline): the best-on-validation weights score the test split
TEST_F1_MACRO = "test_f1_macro"
TEST_ACCURACY = "test_accuracy"
TEST_LOSS = "test_loss"
BEST_VAL_F1_MACRO = "best_val_f1_macro"
BEST_EPOCH = "best_epoch"  # without a validation split (MLM): the last epoch
FINAL_TRAIN_LOSS = "final_train_loss"  # the last epoch's train_loss (the loss of an MLM cell without validation)
SKIPPED_STEPS = "skipped_steps"  # optimizer steps fp16's GradScaler skipped on overflow (0 for bf16 / fp32)
# masked-language modelling: no test split; the last weights are passed on; with no validation
# split (the study's Wikipedia stage) these are absent: FINAL_TRAIN_LOSS is the cell's loss
BEST_VAL_LOSS = "best_val_loss"
FINAL_VAL_LOSS = "final_val_loss"
FINAL_VAL_PERPLEXITY = "final_val_perplexity"
# throughput (raygrid.training.train_loop.throughput)
TRAIN_TIME_S = "train_time_s"
EPOCH_TIME_MEAN_S = "epoch_time_mean_s"
TOKENS_PER_S = "tokens_per_s"  # real tokens only
PADDED_TOKENS_PER_S = "padded_tokens_per_s"  # padding included
PADDING_RATIO = "padding_ratio"  # padded / real tokens
# memory, over the whole cell (validation and test included)
PEAK_GPU_MEM_MB = "peak_gpu_mem_mb"  # torch peak allocated; 0 on CPU
PEAK_HOST_MEM_MB = "peak_host_mem_mb"  # worker peak RSS
# where the time outside training goes (`raygrid bench loop`'s breakdown)
EVAL_TIME_S = "eval_time_s"
CHECKPOINT_TIME_S = "checkpoint_time_s"
MODEL_LOAD_S = "model_load_s"
DATA_LOAD_S = "data_load_s"
WORKER_START_S = "worker_start_s"
# rows `data.bad_rows: skip` dropped from the cell's data (logged by launch from the payload)
DATA_SKIPPED_ROWS = "data_skipped_rows"

EPOCH_METRICS = (TRAIN_LOSS, VAL_LOSS, VAL_F1_MACRO, VAL_ACCURACY, VAL_MLM_ACCURACY, VAL_MLM_PERPLEXITY,
                 EPOCH_TIME_S, LR)
CELL_METRICS = (TEST_F1_MACRO, TEST_ACCURACY, TEST_LOSS, BEST_VAL_F1_MACRO, BEST_EPOCH, FINAL_TRAIN_LOSS, SKIPPED_STEPS,
                BEST_VAL_LOSS, FINAL_VAL_LOSS, FINAL_VAL_PERPLEXITY,
                TRAIN_TIME_S, EPOCH_TIME_MEAN_S, TOKENS_PER_S, PADDED_TOKENS_PER_S, PADDING_RATIO,
                PEAK_GPU_MEM_MB, PEAK_HOST_MEM_MB,
                EVAL_TIME_S, CHECKPOINT_TIME_S, MODEL_LOAD_S, DATA_LOAD_S, WORKER_START_S)

# --- inside an epoch (step = the cell's optimizer step), every ~30 s of training ----------------
# A running cell's progress (raygrid.training.progress); the report's tables read none of them.
PROGRESS_STEP = "progress_step"  # optimizer steps done in the cell (all epochs)
PROGRESS_STEPS_TOTAL = "progress_steps_total"  # the cell's optimizer steps, all epochs
PROGRESS_TOKENS_PER_S = "progress_tokens_per_s"  # real tokens per second of training so far (this run)
PROGRESS_ETA_S = "progress_eta_s"  # mean step time so far x steps left + the validation passes still due
PROGRESS_METRICS = (PROGRESS_STEP, PROGRESS_STEPS_TOTAL, PROGRESS_TOKENS_PER_S, PROGRESS_ETA_S)

# --- the grid's parent run (raygrid.tracking), one value per `raygrid run` ----------------------
CELLS_TOTAL = "cells_total"  # cells in the grid file
CELLS_FINISHED = "cells_finished"  # run by this `raygrid run` and finished
CELLS_FAILED = "cells_failed"  # run by this `raygrid run` and failed (or not run: parent failed)
CELLS_SKIPPED = "cells_skipped"  # finished by an earlier run, not run again
# The cell chosen on validation (the study's protocol) and its scores: `best_cell.<metric>`, or
# `best_cell.<dataset>.<metric>` when the grid spans several datasets.
BEST_CELL = "best_cell"
GRID_METRICS = (CELLS_TOTAL, CELLS_FINISHED, CELLS_FAILED, CELLS_SKIPPED)
