"""A tokenization killed with SIGKILL leaves its build folder behind; the next `data prepare` / `run` removes
it even when it builds nothing itself (every entry cached), and raygrid's scratch folders in the system's
temporary folder too."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

from raygrid.data import builds
from raygrid.data.cache import prepare
from raygrid.data.prepare import prepare_cells
from raygrid.spec.config import DataConfig
from raygrid.spec.loader import load_grid
from tests.conftest import REPO, SAMPLE, tiny_grid_yaml

CFG = DataConfig(dataset="hyperpartisan", path=str(SAMPLE), max_len=32, limit={"train": 10})
# A build that tokenizes one batch, writes it, then hangs: killed there, as `kill -9` mid-tokenization would.
HANGING_BUILD = """
import sys, time
from raygrid.data.cache import prepare
from raygrid.data.tokenize import in_process
from raygrid.spec.config import DataConfig

def hanging(batches, spec):
    yield next(in_process(batches, spec))
    print("tokenizing", flush=True)
    time.sleep(600)

prepare(DataConfig(dataset="hyperpartisan", path=sys.argv[3], max_len=32, limit={"train": 12}), sys.argv[1],
        sys.argv[2], progress=False, tokenize=hanging)
"""


def _hidden(root):
    return sorted(p.name for p in (root / "tokenized").iterdir() if p.name.startswith("."))


def _kill_mid_tokenization(cache, checkpoint) -> None:
    proc = subprocess.Popen([sys.executable, "-c", HANGING_BUILD, str(checkpoint), str(cache), str(SAMPLE)],
                            cwd=REPO, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout.readline().strip() == "tokenizing"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)


def test_a_killed_tokenization_is_removed_by_the_next_prepare_that_builds_nothing(tmp_path, tiny_checkpoint):
    grid = tmp_path / "grid.yaml"
    grid.write_text(tiny_grid_yaml(tiny_checkpoint))
    cells = load_grid(grid).cells
    prepare_cells(cells, tmp_path, progress=False)  # every entry the grid needs is cached from here on
    _kill_mid_tokenization(tmp_path, tiny_checkpoint)  # another entry (limit 12), killed half-way
    left = _hidden(tmp_path)
    assert len(left) == 1 and (tmp_path / "tokenized" / left[0] / builds.MARKER).exists()
    prepare_cells(cells, tmp_path, progress=False)  # a cache hit: before this change, nothing looked
    assert _hidden(tmp_path) == []


def test_a_killed_runs_scratch_folder_is_swept_and_a_live_one_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"{builds.SCRATCH_PREFIX}dead"
    (stale / "work").mkdir(parents=True)
    (stale / builds.MARKER).write_text(json.dumps({"host": os.uname().nodename, "pid": int(dead.stdout),
                                                   "started": time.time()}))
    foreign = tmp_path / "someone-elses-tmp"  # not raygrid's: never touched
    foreign.mkdir()
    with builds.scratch_dir() as live:
        (live / "converted.parquet").write_bytes(b"x")
        removed = builds.sweep(str(tmp_path / "cache"), is_uri=False)
        assert removed == [stale] and live.exists() and foreign.exists()
    assert not live.parent.exists()  # removed on the way out


def test_an_entry_built_after_a_kill_holds_only_its_files(tmp_path, tiny_checkpoint):
    _kill_mid_tokenization(tmp_path, tiny_checkpoint)
    entry = prepare(CFG, str(tiny_checkpoint), tmp_path, progress=False)
    assert _hidden(tmp_path) == []
    assert sorted(os.listdir(entry.folder)) == ["meta.json", "test.parquet", "train.parquet", "validation.parquet"]
