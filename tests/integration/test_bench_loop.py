"""`raygrid bench loop` on a tiny cell: the bare loop and the raygrid loop both train, both are printed."""
import pytest

from raygrid.cli import main
from tests.conftest import tiny_grid_yaml

pytestmark = pytest.mark.integration


def test_bench_loop_prints_both_loops_tokens_per_s_and_their_ratio(ray_local, tiny_checkpoint, tmp_path, capsys):
    grid = tmp_path / "bench.yaml"
    grid.write_text(tiny_grid_yaml(tiny_checkpoint, axes="  model.pooling: [cls]\n", name="bench"))
    code = main(["bench", "loop", str(grid), "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0 and "raygrid keeps" in out
    row = next(line for line in out.splitlines() if line.startswith("| training tokens/s"))
    bare, ray = [float(cell.split()[0].replace(",", "")) for cell in row.split("|")[2:4]]
    assert bare > 0 and ray > 0
    assert "| Train worker group start (trial to worker function) s | - |" in out  # the raygrid side only
    # The trial's own timeline from MLflow's timestamps: each part is a real, non-negative duration.
    for part in ("before the trial", "Ray teardown after the final report", "after the trial"):
        line = next(line for line in out.splitlines() if line.startswith(f"| {part}"))
        assert float(line.split("|")[3]) >= 0
