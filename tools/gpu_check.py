"""`make gpu-check`: everything a GPU changes in raygrid, checked and measured in one short run.

For a bare CUDA machine (torch, transformers, pyarrow, pandas, scikit-learn, pytest; no Ray, no
MLflow, no pydantic, no network). Steps:
  0. refuse without CUDA (exit 1: a GPU check that skips proves nothing);
  1. install what is missing (pydantic) offline from carried wheels (`make gpu-wheels` fetches them);
  2. the CUDA unit tests (tests/gpu): bf16 autocast, peak-memory metric, kernels CUDA vs CPU,
     a BERT_SMALL + RoPE step at 4k and 16k tokens, fit on CUDA (fused AdamW);
  3. the bare training loop of a study-shaped cell (BERT_SMALL + RoPE, 512 and 4096 tokens, each
     attention kind; plus torch.compile at 512): tokens/s, MFU against the card's bf16 peak, peak memory;
  4. `raygrid bench attention` on CUDA (bf16);
  5. where Ray and MLflow are installed, a 2-cell grid end to end with two trials on one GPU
     (gpus_per_worker 0.5); where not, the report says so.
Every figure goes, with the device name, into BENCHMARKS.md between the gpu-check markers (and
into --copy-to, for machines whose working tree does not come back). Exit 1 if any step failed.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- bench:gpu-check:start -->", "<!-- bench:gpu-check:end -->"
# Dense bf16 tensor-core peaks (vendor data sheets, FLOP/s), matched on the device name.
PEAK_BF16 = {"H200": 989e12, "H100 PCIe": 756e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12,
             "L4": 121e12, "A10": 125e12, "RTX 4090": 165e12}
STUDY_SHAPE = {"num_hidden_layers": 4, "hidden_size": 512, "intermediate_size": 2048, "num_attention_heads": 8,
               "attention_probs_dropout_prob": 0.0, "vocab_size": 30522}
KINDS = {"softmax": {"kind": "softmax"}, "favor": {"kind": "favor", "nb_features": 256},
         "lsh": {"kind": "lsh", "chunk_size": 64, "num_hashes": 2}, "linear": {"kind": "linear"}}
LOOP_SHAPES = ((512, 32), (4096, 4))  # (tokens per document, batch size)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", default=str(REPO / ".gpu-wheels"), help="carried wheels (offline install)")
    parser.add_argument("--copy-to", help="also write the section and logs here (e.g. $OUT)")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("gpu-check: FAILED: CUDA is not available on this machine; nothing was checked", file=sys.stderr)
        return 1
    env = _offline_dependencies(Path(args.wheels))
    device = torch.cuda.get_device_name(0)
    results, lines = [], []
    results.append(_step("CUDA unit tests (tests/gpu)", lines, lambda: _unit_tests(env)))
    results.append(_step("bare training loop", lines, lambda: _loop_table(device)))
    results.append(_step("raygrid bench attention", lines, lambda: _attention_bench(env)))
    results.append(_step("grid end to end on Ray", lines, lambda: _ray_grid(env)))
    body = _section(device, lines, all(results))
    _write_section(REPO / "BENCHMARKS.md", body)
    if args.copy_to:
        Path(args.copy_to).mkdir(parents=True, exist_ok=True)
        (Path(args.copy_to) / "gpu_check_section.md").write_text(f"{START}\n{body}{END}\n")
    print(body)
    print("gpu-check:", "PASSED" if all(results) else "FAILED", file=sys.stderr)
    return 0 if all(results) else 1


def _offline_dependencies(wheels: Path) -> dict:
    """Install pydantic (and its own dependencies) from the carried wheels into .gpu-site if missing."""
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    if importlib.util.find_spec("pydantic") is None:
        site = REPO / ".gpu-site"
        if not any(wheels.glob("pydantic-*.whl")):
            raise SystemExit(f"gpu-check: FAILED: pydantic missing and no wheels in {wheels} (run `make gpu-wheels`)")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheels),
                        "--target", str(site), "pydantic"], check=True)
        sys.path.insert(0, str(site))
        env["PYTHONPATH"] = f"{site}{os.pathsep}{REPO}"
    sys.path.insert(0, str(REPO))
    os.environ.update({k: env[k] for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")})
    return env


def _step(title: str, lines: list[str], run) -> bool:
    """Run one step; its Markdown lines (or its failure) go under a heading. True when it passed."""
    started = time.perf_counter()
    try:
        body, ok = run()
    except Exception as err:  # a step's failure is reported, and the others still run
        body, ok = [f"FAILED: {type(err).__name__}: {err}"], False
    lines += [f"### {title} ({'passed' if ok else 'FAILED'}, {time.perf_counter() - started:.0f} s)", "", *body, ""]
    print(f"gpu-check: {title}: {'passed' if ok else 'FAILED'}", file=sys.stderr, flush=True)
    return ok


def _unit_tests(env: dict) -> tuple[list[str], bool]:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/gpu"],
                          cwd=REPO, env={**env, "RAYGRID_GPU_CHECK": "1"}, capture_output=True, text=True,
                          timeout=240)
    tail = (proc.stdout + proc.stderr).strip().splitlines()
    return [f"`pytest tests/gpu`: {tail[-1] if tail else 'no output'}"] + \
        ([f"    {line}" for line in tail[-30:]] if proc.returncode else []), proc.returncode == 0


def _loop_table(device: str) -> tuple[list[str], bool]:
    rows = ["| attention | tokens | batch | compile | tokens/s | MFU | peak GPU MiB |", "|---|---|---|---|---|---|---|"]
    runs = [(kind, length, batch, False) for length, batch in LOOP_SHAPES for kind in KINDS]
    runs.append(("softmax", 512, 32, True))  # torch.compile, measured rather than assumed
    for kind, length, batch, compiled in runs:
        tokens_per_s, peak_mb, flops = _bare_loop(kind, length, batch, compiled)
        peak = next((v for k, v in PEAK_BF16.items() if k in device), None)
        mfu = f"{tokens_per_s * flops / peak:.1%}" if peak else "n/a (peak unknown)"
        rows.append(f"| {kind} | {length} | {batch} | {'yes' if compiled else 'no'} | {tokens_per_s:,.0f} | "
                    f"{mfu} | {peak_mb:,.0f} |")
    note = ("Bare loop = `raygrid.training.train_loop.fit` in this process (no Ray): BERT_SMALL shape + RoPE from "
            "scratch, classification, bf16 autocast, full-length documents (no padding), 12 steps per epoch; "
            "tokens/s of the second epoch. MFU = tokens/s x training FLOPs per token (raygrid.cost.estimate) / the "
            "card's dense bf16 peak.")
    return [note, "", *rows], True


def _bare_loop(kind: str, length: int, batch: int, compiled: bool, device: str = "cuda",
               steps: int = 12) -> tuple[float, float, float]:
    """(tokens/s of the 2nd epoch, peak GPU MiB, training FLOPs per token) of one study-shaped cell."""
    import numpy as np
    import pyarrow as pa
    import torch

    from raygrid.spec.config import CellConfig
    from raygrid.cost.estimate import shape_from_config, train_flops_per_token
    from raygrid.model.encoder import build_classifier
    from raygrid.training.objectives import Classification
    from raygrid.training.loaders import table_loaders
    from raygrid.training.train_loop import fit
    from tests.conftest import write_tiny_checkpoint

    folder = Path(tempfile.mkdtemp()) / "ckpt"
    write_tiny_checkpoint(folder)
    cfg = CellConfig.model_validate({
        "data": {"dataset": "local", "path": "unused", "max_len": length},
        "model": {"checkpoint": str(folder), "from_scratch": True, "positions": "rope",
                  "config_overrides": STUDY_SHAPE},
        "attention": KINDS[kind], "optim": {"lr": 1e-4, "epochs": 2, "batch_size": batch, "compile": compiled}})
    rng = np.random.default_rng(0)

    def table(rows: int) -> pa.Table:
        return pa.table({"input_ids": [rng.integers(5, 30000, length).tolist() for _ in range(rows)],
                         "label": rng.integers(0, 2, rows), "n_tokens": np.full(rows, length, dtype="int32")})

    tables = {"train": table(steps * batch), "validation": table(batch), "test": table(batch)}
    on = torch.device(device)
    epochs = []
    final = fit(cfg, build_classifier(cfg, 2).to(on), table_loaders(cfg, tables, 0, pin_memory=on.type == "cuda"),
                Classification(2), on, lambda m, s: epochs.append(m) if s is not None else None)
    tokens_per_s = steps * batch * length / epochs[-1]["epoch_time_s"]
    flops = train_flops_per_token(cfg, shape_from_config(STUDY_SHAPE), length)
    return tokens_per_s, final["peak_gpu_mem_mb"], flops


def _attention_bench(env: dict) -> tuple[list[str], bool]:
    out = Path(tempfile.mkdtemp()) / "attention.md"
    proc = subprocess.run([sys.executable, "-m", "raygrid.cli", "bench", "attention", "--device", "cuda",
                           "--dtype", "bfloat16", "--no-public", "--repeats", "3", "--out", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    if proc.returncode:
        return [f"FAILED (exit {proc.returncode}):", "", *[f"    {x}" for x in proc.stderr.splitlines()[-20:]]], False
    text = out.read_text()
    body = text.split("-->", 1)[1].rsplit("<!--", 1)[0].strip().replace("## Attention kernels", "#### Attention kernels")
    return [body], True


def _ray_grid(env: dict) -> tuple[list[str], bool]:
    """Two cells side by side on one GPU (gpus_per_worker 0.5), where Ray and MLflow exist."""
    missing = [name for name in ("ray", "mlflow") if importlib.util.find_spec(name) is None]
    if missing:
        return [f"Not run: {' and '.join(missing)} not installed on this machine (Ray's wheel does not fit the "
                "64 MiB carry). Run `make gpu-check` on a Ray cluster node for this step."], True
    root = Path(tempfile.mkdtemp())
    from tests.conftest import tiny_grid_yaml, write_tiny_checkpoint

    grid = root / "gpu.yaml"
    grid.write_text(tiny_grid_yaml(write_tiny_checkpoint(root / "ckpt"), name="gpu-check").replace(
        "resources: {cpus_per_worker: 0.8}",
        "resources: {use_gpu: true, gpus_per_worker: 0.5, cpus_per_worker: 1, max_concurrent_trials: 2}"))
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "raygrid.cli", "run", str(grid), "--out", str(root / "out"),
                           "--cache-dir", str(root / "cache")], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    lines = [f"`raygrid run` of a 2-cell grid, two trials on one GPU: exit {proc.returncode} in "
             f"{time.perf_counter() - started:.0f} s."]
    if proc.returncode:
        lines += ["", *[f"    {x}" for x in (proc.stdout + proc.stderr).splitlines()[-20:]]]
    return lines, proc.returncode == 0


def _section(device: str, lines: list[str], passed: bool) -> str:
    import torch
    import transformers

    head = [f"## GPU check (`make gpu-check`): {'passed' if passed else 'FAILED'}", "",
            f"Device: {device} ({torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB); torch "
            f"{torch.__version__}; CUDA {torch.version.cuda}; transformers {transformers.__version__}; Python "
            f"{sys.version.split()[0]}; {datetime.date.today().isoformat()}.", ""]
    return "\n".join(head + lines) + "\n"


def _write_section(path: Path, body: str) -> None:
    """Replace (or append) the text between the gpu-check markers; every other section is kept."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    section = f"{START}\n{body}{END}"
    if START in text and END in text:
        text = text[:text.index(START)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
