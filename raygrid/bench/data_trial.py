"""`raygrid bench data trial`: peak RSS of one trial's driver and Train worker, on a cache and on 10x it.

Each run is `raygrid run <grid>` of one fine-tuning cell in a child process (a fresh local Ray), on a
long-document classification cache (Hyperpartisan articles joined ten at a time, raygrid.bench.
data_corpora, max_len 512) of N and of 10 x N documents. The model is a one-layer, 32-wide encoder
from scratch, so training costs little and the figures are the data path's. Peak RSS:
- driver: the `raygrid run` process (VmHWM of /proc/self/status, read as it exits);
- worker: the Train worker (`ray::RayTrainWorker`), its VmHWM polled from this process while it lives.
Bounded memory means both grow <= 1.2x for 10x the cache. Run it alone, under the heavy lock.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from raygrid.bench.data_corpora import long_documents
from raygrid.bench.data_memory import CHILD, MINILM, SHARED

POLL_S = 0.2


def add_arguments(parser) -> None:
    parser.add_argument("--documents", type=int, default=1_000, help="long documents at 1x (default 1,000)")
    parser.add_argument("--factor", type=int, default=10, help="the larger cache is this many times the first")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the cell (the training, not the data, sets the wall time)")
    parser.add_argument("--shared", default=str(SHARED), help="folder of hyperpartisan_byarticle_all.parquet")
    parser.add_argument("--tokenizer", default=MINILM, help="checkpoint whose tokenizer and config the cell uses")
    parser.add_argument("--work", help="folder for corpora, caches and runs (default: a temporary folder, removed)")


def main(args) -> int:
    with tempfile.TemporaryDirectory(prefix="raygrid-bench-trial-", dir=args.work) as work:
        work = Path(work)
        rows = [_measure(args, work, scale) for scale in (1, args.factor)]
        print(_table(rows, args.factor))
    return 0


def _grid(work: Path, scale: int, tokenizer: str, epochs: int = 2) -> Path:
    path = work / f"trial-{scale}.yaml"
    path.write_text(
        f"name: bench-trial-{scale}\nbase:\n  kind: finetune\n"
        f"  data: {{dataset: local, path: {work / f'long-{scale}'}, max_len: 512}}\n"
        f"  model: {{checkpoint: '{tokenizer}', from_scratch: true, config_overrides: {{num_hidden_layers: 1, "
        f"hidden_size: 32, num_attention_heads: 2, intermediate_size: 64}}}}\n"
        f"  optim: {{epochs: {epochs}, batch_size: 32, lr: 1.0e-3, precision: fp32}}\n"
        f"resources: {{workers_per_trial: 1, cpus_per_worker: 1}}\n")
    return path


def _measure(args, work: Path, scale: int) -> dict:
    """Prepare the cache (not measured), then one `raygrid run` in a child: peak RSS of driver and worker."""
    long_documents(Path(args.shared) / "hyperpartisan_byarticle_all.parquet", args.documents * scale,
                            work / f"long-{scale}")
    grid, cache, out = _grid(work, scale, args.tokenizer, args.epochs), work / f"cache-{scale}", work / f"out-{scale}"
    subprocess.run([sys.executable, "-m", "raygrid.cli", "data", "prepare", str(grid), "--cache-dir", str(cache)],
                   check=True, capture_output=True)
    status, log = work / f"driver-{scale}.status", work / f"run-{scale}.log"
    started = time.perf_counter()
    with open(log, "w") as sink:
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(status), "run", str(grid), "--cache-dir", str(cache),
                                  "--out", str(out)], stdout=sink, stderr=subprocess.STDOUT)
        worker_kb = _poll_workers(child)
    if child.returncode != 0:
        raise RuntimeError(f"raygrid run failed ({child.returncode}); see {log}")
    meta = json.loads(next((cache / "tokenized").glob("*/meta.json")).read_text())
    train = meta["splits"]["train"]
    return {"rows": train["rows"], "tokens": train["tokens"], "driver_mb": _high_water_kb(status.read_text()) / 1024,
            "worker_mb": worker_kb / 1024, "wall_s": time.perf_counter() - started}


def _poll_workers(child: subprocess.Popen) -> int:
    """Until `child` exits: the largest VmHWM (kB) of any Train worker process below it."""
    peak = 0
    while child.poll() is None:
        for proc in _below(child.pid):
            try:
                if "RayTrainWorker" in " ".join(proc.cmdline()):
                    peak = max(peak, _high_water_kb(Path(f"/proc/{proc.pid}/status").read_text()))
            except (psutil.Error, OSError, StopIteration):
                continue
        time.sleep(POLL_S)
    return peak


def _high_water_kb(status: str) -> int:
    """VmHWM of a /proc/<pid>/status text: the process's peak resident set since it started (kB)."""
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))


def _below(pid: int) -> list:
    """The processes of a local Ray started by `pid` (Ray's workers are its raylet's children)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _table(rows: list[dict], factor: int) -> str:
    lines = ["| cache | training rows | training tokens | driver peak RSS | Train worker peak RSS | wall |",
             "|---|---:|---:|---:|---:|---:|"]
    for scale, m in zip((1, factor), rows):
        lines.append(f"| {scale}x | {m['rows']:,} | {m['tokens'] / 1e6:.1f} M | {m['driver_mb']:,.0f} MB | "
                     f"{m['worker_mb']:,.0f} MB | {m['wall_s']:.0f} s |")
    small, large = rows
    lines.append(f"| **growth** | {large['rows'] / small['rows']:.1f}x | {large['tokens'] / small['tokens']:.1f}x | "
                 f"**{large['driver_mb'] / small['driver_mb']:.2f}x** | "
                 f"**{large['worker_mb'] / max(small['worker_mb'], 1):.2f}x** | |")
    return "\n".join(lines)
