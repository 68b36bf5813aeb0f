"""Shared fixtures: a tiny random BERT checkpoint with a real WordPiece tokenizer, written to disk.

No hub downloads: the vocabulary is built here, the weights are random (BertModelTester-sized).
"""
from __future__ import annotations

import os
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
