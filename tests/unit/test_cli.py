"""CLI contract: plan lists cells without Ray; bad grids fail fast with exit code 2."""
import subprocess
import sys

from raygrid.cli import main

QUICKSTART = "grids/quickstart.yaml"


def test_plan_lists_every_cell_and_the_count(capsys):
    assert main(["plan", QUICKSTART]) == 0
    out = capsys.readouterr().out
    assert "8 cells" in out and out.count("pooling=") == 8


def test_plan_starts_no_ray():
    code = ("import sys; from raygrid.cli import main; main(['plan', 'grids/quickstart.yaml']);"
            "print('ray' in sys.modules, 'mlflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("False False")


def test_broken_grid_fails_fast_before_ray_or_mlflow(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nbase:\n  data: {dataset: imdb}\n  model: {checkpoint: x, pooling: max}\n")
    out = tmp_path / "out"
    assert main(["run", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("raygrid: error:") and str(bad) in err and "model.pooling" in err
    assert len(err.splitlines()) == 1
    assert not out.exists(), "no MLflow store is created for a grid that cannot run"
