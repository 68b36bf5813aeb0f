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


def test_data_stats_on_the_shipped_sample(capsys):
    assert main(["data", "stats", "hyperpartisan", "--path", "raygrid/resources/hyperpartisan_sample"]) == 0
    out = capsys.readouterr().out
    assert "| train | 96 |" in out and "| test | 32 |" in out and "false 61" in out


def test_data_stats_with_an_unknown_dataset_fails_in_one_line_naming_it(capsys):
    assert main(["data", "stats", "imbd"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("raygrid: error: data stats: dataset: ") and "'imdb'" in err and "(got 'imbd')" in err
    assert len(err.splitlines()) == 1


def test_plan_of_a_staged_grid_counts_cells_per_stage(capsys):
    assert main(["plan", "grids/quickstart_chain.yaml", "--no-cost"]) == 0
    assert "6 cells (stages tapt 3, finetune 3)" in capsys.readouterr().out


def test_data_prepare_tokenizes_each_distinct_data_config_once(tmp_path, tiny_checkpoint, capsys):
    from tests.conftest import tiny_grid_yaml

    grid = tmp_path / "g.yaml"
    grid.write_text(tiny_grid_yaml(tiny_checkpoint, axes="  model.pooling: [cls, mean]\n  data.max_len: [32, 64]\n"))
    assert main(["data", "prepare", str(grid), "--cache-dir", str(tmp_path / "cache")]) == 0
    folders = capsys.readouterr().out.split()
    assert len(folders) == 2 and len(list((tmp_path / "cache" / "tokenized").iterdir())) == 2


def test_every_command_has_help():
    for argv in (["--help"], ["plan", "--help"], ["run", "--help"], ["report", "--help"], ["data", "stats", "--help"],
                 ["data", "prepare", "--help"], ["bench", "attention", "--help"]):
        out = subprocess.run([sys.executable, "-m", "raygrid.cli", *argv], capture_output=True, text=True)
        assert out.returncode == 0 and "usage: raygrid" in out.stdout, argv


def test_bench_options_are_added_when_that_bench_is_chosen():
    out = subprocess.run([sys.executable, "-m", "raygrid.cli", "bench", "padding", "--help"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "--max-len" in out.stdout and "--batch-size" in out.stdout


# `bench attention|loop --help` are left out: their options live in modules that need torch to run.
LIGHT_COMMANDS = (["--help"], ["plan", "--help"], ["run", "--help"], ["report", "--help"], ["data", "--help"],
                  ["data", "prepare", "--help"], ["data", "stats", "--help"], ["bench", "--help"],
                  ["bench", "padding", "--help"], ["plan", "grids/quickstart.yaml", "--no-cost"])
_WHO_IMPORTS = r"""
import importlib.abc, json, sys, traceback
heavy = {"torch": None, "transformers": None, "ray": None, "mlflow": None}
class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name in heavy and heavy[name] is None:  # first import: the raygrid module asking for it
            frames = [f.filename for f in traceback.extract_stack() if "/raygrid/" in f.filename]
            heavy[name] = frames[-1] if frames else "?"
        return None
sys.meta_path.insert(0, Watch())
import pytest

from raygrid.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps({k: v for k, v in heavy.items() if v}))
"""


def test_help_and_plan_no_cost_import_no_torch_ray_or_mlflow():
    import json

    culprits = {}
    for argv in LIGHT_COMMANDS:
        out = subprocess.run([sys.executable, "-c", _WHO_IMPORTS, *argv], capture_output=True, text=True, check=True)
        for package, module in json.loads(out.stdout.strip().splitlines()[-1]).items():
            culprits.setdefault(f"{package} <- {module.split('/raygrid/', 1)[-1]}", []).append(" ".join(argv))
    assert not any("cli.py" in culprit for culprit in culprits), culprits  # the CLI itself imports lazily
    assert not culprits, culprits
