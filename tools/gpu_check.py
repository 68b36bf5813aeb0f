"""`make gpu-check`: everything a GPU changes in raygrid, checked and measured in one run of under 10 minutes.

For a bare CUDA machine (torch, transformers, pyarrow, pandas, scikit-learn, pytest; no Ray, no
MLflow, no pydantic, no network). Steps:
  0. refuse without CUDA (exit 1: a GPU check that skips proves nothing);
  1. install what is missing offline from carried wheels (`make gpu-wheels` fetches them): pydantic,
     and the public peers performer-pytorch / reformer-pytorch (their rows are left out without them);
  2. the CUDA unit tests (tests/gpu): bf16 autocast, peak-memory metric, kernels CUDA vs CPU, the fused
     LSH kernel (compiled flex_attention) vs the reference, chunked FAVOR+ vs its dense formula, a
     BERT_SMALL + RoPE step at 4k and 16k tokens, fit on CUDA (fused AdamW);
  3. the kernel table (raygrid.bench.kernel_table): every registered variant at its study setting, LSH
     fused vs reference, SDPA and the peers, 512-16k tokens at 32k tokens per batch, bf16: time, peak
     memory, error;
  4. the bare training loop of a study-shaped cell per variant (BERT_SMALL + RoPE, 512 and 4096 tokens,
     the same rows; plus torch.compile at 512): tokens/s, MFU against the card's bf16 peak, peak memory;
  5. where Ray and MLflow are installed, a 2-cell grid end to end with two trials on one GPU
     (gpus_per_worker 0.5); where not, the report says so.
Rows come from the attention registry (each record's `study` setting), never from a list of kinds here.
A time budget (--budget-s) keeps the whole run under 10 minutes: rows left when it runs out are
reported as not run. Every figure goes, with the device name, into BENCHMARKS.md between the gpu-check
markers (and into --copy-to, for machines whose working tree does not come back). Exit 1 if any step failed.
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
LOOP_SHAPES = ((512, 32), (4096, 4))  # (tokens per document, batch size)
KERNEL_LENGTHS = (512, 1024, 2048, 4096, 8192, 16384)
KERNEL_TOKENS, KERNEL_HEADS, KERNEL_HEAD_DIM = 32768, 12, 64  # the H200 figures: 32k tokens, 12 x 64
# The peers of the kernel table (pyproject's `bench` extra) and their dependencies, installed without
# dependency resolution (torch is there already); `make gpu-wheels` downloads exactly these.
PEER_PACKAGES = ("performer-pytorch", "reformer-pytorch", "einops", "local-attention", "axial-positional-embedding",
                 "product-key-memory", "hyper-connections", "colt5-attention", "torch-einops-utils")
STEPS = ("tests", "kernels", "loop", "ray")
# Shares of the time left that a step may use (the rest waits for the steps after it).
SHARES = {"tests": 0.5, "kernels": 0.45, "loop": 0.9, "ray": 1.0}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", default=str(REPO / ".gpu-wheels"), help="carried wheels (offline install)")
    parser.add_argument("--copy-to", help="also write the section and logs here (e.g. $OUT)")
    parser.add_argument("--budget-s", type=float, default=540.0,
                        help="wall-clock budget of all steps (default 540 s: the run fits 10 minutes)")
    parser.add_argument("--skip", nargs="+", choices=STEPS, default=[], help="steps to leave out")
    parser.add_argument("--kernel-lengths", type=int, nargs="+", default=list(KERNEL_LENGTHS),
                        help="sequence lengths of the kernel table")
    args = parser.parse_args(argv)
    if args.budget_s <= 0:
        parser.error("--budget-s must be positive")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu-check: FAILED: CUDA is not available on this machine; nothing was checked", file=sys.stderr)
        return 1
    deadline = time.monotonic() + args.budget_s
    env = _offline_dependencies(Path(args.wheels))
    from raygrid.attention import records

    for record in records():  # the kernel table and the loop compile many settings (LSH: flex_attention)
        setup = record.hook("bench_setup")
        if setup is not None:
            setup()
    device = torch.cuda.get_device_name(0)
    runs = {"tests": lambda until: _unit_tests(env, until), "loop": lambda until: _loop_table(device, until),
            "kernels": lambda until: _kernel_table(args.kernel_lengths, until), "ray": lambda until: _ray_grid(env)}
    titles = {"tests": "CUDA unit tests (tests/gpu)", "kernels": "attention kernels side by side",
              "loop": "study-shaped cells, bare training loop", "ray": "grid end to end on Ray"}
    results, lines = [], []
    for name in STEPS:
        if name in args.skip:
            lines += [f"### {titles[name]} (skipped: --skip {name})", ""]
            continue
        until = time.monotonic() + SHARES[name] * max(0.0, deadline - time.monotonic())
        results.append(_step(titles[name], lines, lambda run=runs[name], until=until: run(until)))
    from raygrid.bench.attention import write_section

    body = _section(device, lines, all(results))
    write_section(REPO / "BENCHMARKS.md", body, START, END)
    if args.copy_to:
        Path(args.copy_to).mkdir(parents=True, exist_ok=True)
        (Path(args.copy_to) / "gpu_check_section.md").write_text(f"{START}\n{body}{END}\n")
    print(body)
    print("gpu-check:", "PASSED" if all(results) else "FAILED", file=sys.stderr)
    return 0 if all(results) else 1


def _offline_dependencies(wheels: Path) -> dict:
    """Install pydantic (with its own dependencies) and the peers (without) from the carried wheels into .gpu-site."""
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    site = REPO / ".gpu-site"
    installs = []
    if importlib.util.find_spec("pydantic") is None:
        if not any(wheels.glob("pydantic-*.whl")):
            raise SystemExit(f"gpu-check: FAILED: pydantic missing and no wheels in {wheels} (run `make gpu-wheels`)")
        installs.append(["pydantic"])
    if importlib.util.find_spec("performer_pytorch") is None and any(wheels.glob("performer_pytorch-*.whl")):
        installs.append(["--no-deps", *PEER_PACKAGES])  # without them the peer rows are left out
    for packages in installs:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheels),
                        "--target", str(site), *packages], check=True)
    if installs:
        sys.path.insert(0, str(site))
        env["PYTHONPATH"] = f"{site}{os.pathsep}{REPO}"
    sys.path.insert(0, str(REPO))
    os.environ.update({k: env[k] for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "PYTHONPATH")})
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


def _unit_tests(env: dict, until: float) -> tuple[list[str], bool]:
    timeout = max(60.0, until - time.monotonic())
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/gpu"],
                              cwd=REPO, env={**env, "RAYGRID_GPU_CHECK": "1"}, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as expired:
        out = expired.stdout or ""
        tail = (out.decode(errors="replace") if isinstance(out, bytes) else out).strip().splitlines()[-30:]
        return [f"`pytest tests/gpu`: stopped after its {timeout:.0f} s budget", *[f"    {x}" for x in tail]], False
    tail = (proc.stdout + proc.stderr).strip().splitlines()
    return [f"`pytest tests/gpu`: {tail[-1] if tail else 'no output'}"] + \
        ([f"    {line}" for line in tail[-30:]] if proc.returncode else []), proc.returncode == 0


def study_runs() -> list[tuple[str, object, int, int, bool]]:
    """(label, params, tokens, batch, compiled) of the loop table: each registry row per shape, then compile."""
    from raygrid.bench.kernel_table import study_rows

    rows = study_rows()
    runs = [(label, params, length, batch, False) for length, batch in LOOP_SHAPES for label, params in rows]
    label, params = rows[0]  # the reference variant (softmax), compiled: measured rather than assumed
    return runs + [(label, params, *LOOP_SHAPES[0], True)]


def _loop_table(device: str, until: float) -> tuple[list[str], bool]:
    rows = ["| attention | tokens | batch | compile | tokens/s | MFU | peak GPU MiB |", "|---|---|---|---|---|---|---|"]
    ok = True
    for label, params, length, batch, compiled in study_runs():
        where = f"| {label} | {length} | {batch} | {'yes' if compiled else 'no'} |"
        if time.monotonic() > until:
            rows.append(f"{where} not run (time budget) | | |")
            continue
        try:
            tokens_per_s, peak_mb, flops = _bare_loop(params, length, batch, compiled)
        except Exception as err:  # noqa: BLE001 - one failing row is reported; the others still run
            rows.append(f"{where} failed: {type(err).__name__}: {str(err)[:80]} | | |")
            ok = False
            continue
        rows.append(f"{where} {tokens_per_s:,.0f} | {mfu(tokens_per_s, flops, device)} | {peak_mb:,.0f} |")
    note = ("Bare loop = `raygrid.training.train_loop.fit` in this process (no Ray): BERT_SMALL shape + RoPE from "
            "scratch, each registered variant at its study setting (LSH: the fused and the reference kernel), "
            "classification, bf16 autocast, full-length documents (no padding), 12 steps per epoch; tokens/s of the "
            "second epoch. MFU = tokens/s x training FLOPs per token (raygrid.cost.estimate) / the card's dense "
            "bf16 peak.")
    return [note, "", *rows], ok


def mfu(tokens_per_s: float, flops_per_token: float, device: str) -> str:
    """Model FLOPs utilisation against the card's dense bf16 peak, or why it is unknown."""
    peak = next((v for k, v in PEAK_BF16.items() if k in device), None)
    return f"{tokens_per_s * flops_per_token / peak:.1%}" if peak else "n/a (peak unknown)"


def _bare_loop(params, length: int, batch: int, compiled: bool, device: str = "cuda",
               steps: int = 12) -> tuple[float, float, float]:
    """(tokens/s of the 2nd epoch, peak GPU MiB, training FLOPs per token) of one study-shaped cell."""
    import numpy as np
    import pyarrow as pa
    import torch

    from raygrid.cost.estimate import shape_from_config, train_flops_per_token
    from raygrid.model.encoder import build_classifier
    from raygrid.spec.config import CellConfig
    from raygrid.training.loaders import table_loaders
    from raygrid.training.objectives import Classification
    from raygrid.training.train_loop import fit
    from tests.conftest import write_tiny_checkpoint

    folder = Path(tempfile.mkdtemp()) / "ckpt"
    write_tiny_checkpoint(folder)
    cfg = CellConfig.model_validate({
        "data": {"dataset": "local", "path": "unused", "max_len": length},
        "model": {"checkpoint": str(folder), "from_scratch": True, "positions": "rope",
                  "config_overrides": STUDY_SHAPE},
        "attention": params.model_dump(), "optim": {"lr": 1e-4, "epochs": 2, "batch_size": batch,
                                                    "compile": compiled}})
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


def _kernel_table(lengths, until: float) -> tuple[list[str], bool]:
    """raygrid.bench.kernel_table on CUDA in bf16, in this process, stopping at `until`."""
    from raygrid.bench.kernel_table import render_markdown, run_kernel_table

    import torch

    results = run_kernel_table(lengths, KERNEL_TOKENS, KERNEL_HEADS, KERNEL_HEAD_DIM, "cuda", "bfloat16",
                               repeats=3, deadline=until)
    torch.cuda.empty_cache()  # the loop's peak memory starts from a clean cache
    peers = any(r["variant"].startswith(("performer", "reformer")) for r in results)
    note = "" if peers else "performer_pytorch / reformer_pytorch not installed (no wheels carried): no peer rows."
    body = render_markdown(results, "cuda", "bfloat16", KERNEL_TOKENS, KERNEL_HEADS, KERNEL_HEAD_DIM, note)
    body = body.replace("## Attention kernels side by side", "#### Attention kernels side by side")
    return [body], fused_rows_agree(results)


def fused_rows_agree(results: list[dict], tolerance: float = 5e-2) -> bool:
    """Every fused row that ran matches its reference kernel (bf16 outputs: errors of ~1e-2 at most)."""
    ran = [r for r in results if r["variant"].endswith("[fused]") and "skipped" not in r]
    return all(r.get("rel_error") is not None and r["rel_error"] < tolerance for r in ran)


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


if __name__ == "__main__":
    sys.exit(main())
