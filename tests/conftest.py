"""Shared fixtures: a tiny random BERT checkpoint with a real WordPiece tokenizer, written to disk.

No hub downloads: the vocabulary is built here, the weights are random (BertModelTester-sized).
"""
from __future__ import annotations

import os
import sqlite3
import string
from pathlib import Path

import pytest

# Ray Train's controller polls its workers every 2 s by default: up to 2 s after each report and at
# each trial's end, negligible for real trials, a tenth of a tiny test trial. Set before any Ray
# process starts, so every raylet (and so every controller) of the tests inherits it.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
# Train's preemption watcher (one more process per trial, ~2 s of CPU to start) watches for spot
# nodes being reclaimed; the tests' nodes are processes on this machine, never preempted.
os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
# Ray's log monitor globs its node's log folder every 0.1 s until it holds 1000 files, then every
# 0.5 s; a test session's folder grows to hundreds of files, and the globbing cost ~40 s of CPU.
os.environ.setdefault("RAY_LOG_MONITOR_MANY_FILES_THRESHOLD", "0")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SAMPLE = REPO / "raygrid" / "resources" / "hyperpartisan_sample"

WORDS = ("the a of to and in is that for it on with as was be by this are news trump said "
         "president people government state would not he his they have from at will".split())


def write_tiny_checkpoint(folder: Path, layers: int = 2, hidden: int = 32, heads: int = 4) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizerFast
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(string.ascii_lowercase + string.digits)
    pieces += ["##" + c for c in string.ascii_lowercase + string.digits] + list(string.punctuation) + WORDS
    (folder / "vocab.txt").write_text("\n".join(dict.fromkeys(pieces)) + "\n")
    BertTokenizerFast(vocab=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(folder)
    config = BertConfig(vocab_size=len(dict.fromkeys(pieces)), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=2 * hidden, max_position_embeddings=512)
    torch.manual_seed(0)
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session", autouse=True)
def mlflow_schema_built_once(tmp_path_factory):
    """MLflow builds a new SQLite store's schema by replaying its ~60 migrations: 2-3 s of CPU per store,
    and the tests make ~25 stores (each test its own --out). The session's first store is built by MLflow
    for real; every later new store in this process starts as a copy of that fresh, empty store, which
    MLflow then opens and checks as it would any existing one. Processes the tests start (raygrid run in
    a subprocess, the MLflow server) still build theirs themselves.
    """
    try:
        from mlflow.store.db import utils as db_utils
    except ImportError:  # a tier without MLflow installed
        yield
        return
    template = tmp_path_factory.mktemp("mlflow-schema") / "empty.db"
    build = db_utils._initialize_tables

    def initialize_tables(engine):
        target = engine.url.database if engine.url.get_backend_name() == "sqlite" else None
        if not target or target == ":memory:":
            return build(engine)
        if not template.exists():
            build(engine)
            return _copy_sqlite(Path(target), template)
        return _copy_sqlite(template, Path(target))

    db_utils._initialize_tables = initialize_tables
    yield
    db_utils._initialize_tables = build


def _copy_sqlite(source: Path, target: Path) -> None:
    """SQLite's online backup: a consistent copy, written through SQLite into the target (which may be open)."""
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA} (CI lays ../shared beside the clone)")
    return SHARED_DATA


def tiny_grid_yaml(checkpoint: Path, data_path: Path = SAMPLE, axes: str | None = None, extra: str = "",
                   name: str = "tiny") -> str:
    """A small but real grid: the shipped Hyperpartisan sample on the tiny checkpoint."""
    axes = axes or "  model.pooling: [cls, mean]\n"
    return f"""
name: {name}
base:
  data: {{dataset: hyperpartisan, path: {data_path}, max_len: 64, limit: {{train: 32, validation: 16, test: 16}}}}
  model: {{checkpoint: {checkpoint}, pooling: cls, n_freeze: 0, p_drop: 0.1}}
  optim: {{lr: 1.0e-3, epochs: 2, batch_size: 8}}
  seed: 0
axes:
{axes}resources: {{cpus_per_worker: 0.8}}
{extra}"""
