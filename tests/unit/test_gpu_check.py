"""`make gpu-check` refuses to pass without CUDA, and its CUDA tests stay out of `make test`."""
import os
import subprocess
import sys

import pytest
import torch

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
