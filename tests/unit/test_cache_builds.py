"""Temporary build folders: removed when a build fails, and left by a killed build removed by the next one."""
import json
import os
import subprocess
import sys

import pytest

from raygrid.data import builds
from raygrid.data.cache import prepare
from raygrid.data.tokenize import in_process
from raygrid.spec.config import DataConfig
from tests.conftest import SAMPLE

CFG = DataConfig(dataset="hyperpartisan", path=str(SAMPLE), max_len=32, limit={"train": 10})


def hidden(root):
    folder = root / "tokenized"
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) if folder.exists() else []


def test_a_failing_build_leaves_no_folder_behind(tmp_path, tiny_checkpoint):
    def failing(batches, spec):  # tokenizes one batch, then the build dies
        yield next(in_process(batches, spec))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare(CFG, str(tiny_checkpoint), tmp_path, progress=False, tokenize=failing)
    assert hidden(tmp_path) == [] and not any((tmp_path / "tokenized").iterdir())


def test_a_killed_build_is_cleaned_up_by_the_next_one(tmp_path, tiny_checkpoint):
    tokenized = tmp_path / "tokenized"
    tokenized.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tokenized / ".imdb-0123456789abcdef-dead1234"
    stale.mkdir()
    (stale / "train.parquet").write_bytes(b"half written")
    (stale / builds.MARKER).write_text(json.dumps({"host": os.uname().nodename, "pid": int(dead.stdout),
                                                   "started": 1.0}))
    running = tokenized / ".imdb-0123456789abcdef-live5678"  # a build in progress in this very process
    running.mkdir()
    (running / builds.MARKER).write_text(json.dumps({"host": os.uname().nodename, "pid": os.getpid(),
                                                     "started": builds._start_time(os.getpid())}))
    entry = prepare(CFG, str(tiny_checkpoint), tmp_path, progress=False)
    assert hidden(tmp_path) == [running.name]  # the dead build's folder is gone, the live one kept
    assert sorted(p.name for p in (tmp_path / "tokenized" / entry.folder.rsplit("/", 1)[-1]).iterdir()) == \
        ["meta.json", "test.parquet", "train.parquet", "validation.parquet"]  # no marker in the published entry


def test_another_hosts_build_is_stale_only_when_its_marker_stops_moving(tmp_path):
    folder = tmp_path / ".x-1"
    folder.mkdir()
    (folder / builds.MARKER).write_text(json.dumps({"host": "elsewhere", "pid": 1, "started": 1.0}))
    assert builds.remove_stale(tmp_path, ".*-*") == []
    old = os.path.getmtime(folder / builds.MARKER) - builds.STALE_AFTER_S - 60
    os.utime(folder / builds.MARKER, (old, old))
    assert builds.remove_stale(tmp_path, ".*-*") == [folder] and not folder.exists()
