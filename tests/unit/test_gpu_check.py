"""`make gpu-check`: refuses to pass without CUDA, keeps its CUDA tests out of `make test`, builds its rows."""
import importlib.util
import os
import re
import subprocess
import sys

import pytest
import torch

from raygrid.attention import records
from tests.conftest import REPO


def test_gpu_check_fails_loudly_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the refusal cannot be observed here")
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "gpu_check.py")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1 and "CUDA is not available" in proc.stderr


def test_cuda_tests_are_collected_only_for_the_gpu_check():
    listed = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "tests/gpu"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert "test_cuda.py" not in listed.stdout
    env_listed = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "tests/gpu"], cwd=REPO,
                                capture_output=True, text=True, timeout=120,
                                env={**os.environ, "RAYGRID_GPU_CHECK": "1"})
    assert "test_cuda.py::test_peak_gpu_memory_metric_sees_an_allocation_and_resets" in env_listed.stdout


def _gpu_check():
    """tools/gpu_check.py as a module (tools/ is no package)."""
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "tools" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_arguments_budget_and_skips():
    gpu_check = _gpu_check()
    args = gpu_check.parse_args([])
    assert args.budget_s <= 560 and args.skip == [] and args.kernel_lengths[0] == 512 and args.kernel_lengths[-1] == 16384
    args = gpu_check.parse_args(["--skip", "ray", "loop", "--kernel-lengths", "512", "1024", "--budget-s", "60"])
    assert args.skip == ["ray", "loop"] and args.kernel_lengths == [512, 1024] and args.budget_s == 60
    for bad in (["--skip", "bench"], ["--budget-s", "0"]):
        with pytest.raises(SystemExit):
            gpu_check.parse_args(bad)


def test_loop_rows_come_from_the_registry():
    runs = _gpu_check().study_runs()
    labels = {label for label, *_ in runs}
    for record in records():  # every variant at its study setting, LSH once per kernel
        label, params = record.study_params()
        assert label in labels or {f"{label} [fused]", f"{label} [reference]"} <= labels
    lsh = [params for label, params, *_ in runs if params.kind == "lsh"]
    assert {p.implementation for p in lsh} == {"fused", "reference"} and {p.qk for p in lsh} == {"shared"}
    assert sum(compiled for *_, compiled in runs) == 1 and runs[-1][1].kind == records()[0].kind


def test_mfu_and_fused_row_verdicts():
    gpu_check = _gpu_check()
    assert gpu_check.mfu(1e5, 1e9, "NVIDIA H200") == "10.1%"  # 1e14 / 989e12
    assert gpu_check.mfu(1e5, 1e9, "Mystery GPU").startswith("n/a")
    fused = {"variant": "lsh study R=2 L=64 [fused]", "length": 512}
    assert gpu_check.fused_rows_agree([{**fused, "rel_error": 4e-3}, {**fused, "skipped": "time budget"}])
    assert not gpu_check.fused_rows_agree([{**fused, "rel_error": 0.2}])
    assert not gpu_check.fused_rows_agree([{**fused, "error": "CUDA out of memory"}])


def test_the_carried_peer_wheels_are_the_ones_installed():
    """`make gpu-wheels` downloads (pinned, without resolution) exactly what gpu_check installs without resolution."""
    text = (REPO / "Makefile").read_text().replace("\\\n", " ")
    pinned = re.search(r"^GPU_PEERS := (.*)$", text, flags=re.MULTILINE).group(1).split()
    assert [spec.split("==")[0] for spec in pinned] == list(_gpu_check().PEER_PACKAGES)
    assert all("==" in spec for spec in pinned)
