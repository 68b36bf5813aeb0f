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
LIGHT_COMMANDS = (["--help"], ["--version"], ["plan", "--help"], ["run", "--help"], ["report", "--help"], ["data", "--help"],
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


def test_version_names_raygrid_and_the_frameworks_without_importing_them(capsys):
    import pytest

    from raygrid import __version__

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and out.startswith(f"raygrid {__version__} (ray ") and "mlflow" in out


def _snapshot(root):
    """Every file and folder under `root`: size, modification time and content hash."""
    import hashlib

    return {str(p.relative_to(root)): (p.is_dir(), p.stat().st_size, p.stat().st_mtime_ns,
                                       p.is_file() and hashlib.sha1(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*"))}


def _plan(tmp_path, *argv):
    """`raygrid plan` in a fresh process, its home, caches and current folder inside tmp_path."""
    import os

    env = {**os.environ, "HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "home" / ".cache"),
           "MPLCONFIGDIR": str(tmp_path / "home" / "mpl"), "RAYGRID_CACHE": str(tmp_path / "cache")}
    env.pop("MLFLOW_TRACKING_URI", None)
    code = "import sys; from raygrid.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, "plan", *argv], capture_output=True, text=True,
                          cwd=tmp_path / "work", env=env, timeout=300)


def test_plan_writes_nothing_and_says_which_cells_finished(tmp_path):
    from pathlib import Path

    from raygrid.orchestration.tuner import axis_labels
    from raygrid.spec.loader import load_grid
    from raygrid.tracking.runs import GridTracker

    for folder in ("home", "cache", "work"):
        (tmp_path / folder).mkdir()
    grid_file = str(Path(QUICKSTART).resolve())
    uri = f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}"
    tracker = GridTracker(uri, "quickstart")
    for cell in load_grid(QUICKSTART).cells[:2]:
        tracker.end_cell(tracker.start_cell(cell.name, axis_labels(cell), cell.config.model_dump(mode="json")))
    before = _snapshot(tmp_path)
    done = _plan(tmp_path, grid_file, "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"))
    assert done.returncode == 0, done.stderr
    assert f"MLflow {uri}: 2 of 8 cells finished (`raygrid run` skips them); 6 would run:" in done.stdout
    assert "   3  pooling=cls,n_freeze=2,p_drop=0.1" in done.stdout.splitlines()
    assert _snapshot(tmp_path) == before  # no file created or changed: store, cache, home, current folder
    # no store: nothing finished, and no folder made for one
    done = _plan(tmp_path, grid_file, "--no-cost", "--out", str(tmp_path / "none"))
    assert f"MLflow: no store at {tmp_path / 'none' / 'mlflow.db'} yet: all 8 cells would run" in done.stdout
    assert not (tmp_path / "none").exists() and _snapshot(tmp_path) == before


def test_plan_leaves_a_store_another_run_is_creating_alone(tmp_path):
    for folder in ("home", "cache", "work", "out"):
        (tmp_path / folder).mkdir()
    (tmp_path / "out" / "mlflow.db").touch()  # what a `raygrid run` starting this moment has written so far
    done = _plan(tmp_path, str(Path_(QUICKSTART)), "--no-cost", "--out", str(tmp_path / "out"))
    assert done.returncode == 0 and "cannot be read (plan opens it read-only" in done.stdout
    assert (tmp_path / "out" / "mlflow.db").stat().st_size == 0  # never created, migrated or locked by plan


def Path_(path):
    from pathlib import Path

    return Path(path).resolve()


def test_every_command_that_reads_a_grid_takes_overrides(tmp_path, tiny_checkpoint, capsys):
    from tests.conftest import tiny_grid_yaml

    grid = tmp_path / "g.yaml"
    grid.write_text(tiny_grid_yaml(tiny_checkpoint, axes="  model.pooling: [cls, mean]\n  data.max_len: [32, 64]\n"))
    assert main(["data", "prepare", str(grid), "axes.data.max_len=[48]", "--cache-dir", str(tmp_path / "cache")]) == 0
    assert len(capsys.readouterr().out.split()) == 1  # one data config left: max_len 48
    from raygrid.cli import build_parser
    import raygrid.bench.loop

    args = build_parser().parse_args(["bench", "loop", str(grid), "optim.lr=1e-4", "--cell", "x"])
    assert args.overrides == ["optim.lr=1e-4"] and args.func is raygrid.bench.loop.main
    # report: the grid as overridden names the experiment it ran as
    from raygrid.tracking.runs import GridTracker

    uri = f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}"
    tracker = GridTracker(uri, "tiny-lr")
    run = tracker.start_cell("pooling=cls,max_len=32", {}, {"kind": "finetune", "data": {"dataset": "hyperpartisan"}})
    tracker.log_metrics(run, {"test_f1_macro": 0.75}, step=0)
    tracker.end_cell(run)
    assert main(["report", str(grid), "name=tiny-lr", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "## grid tiny-lr" in out and "| pooling=cls,max_len=32 | FINISHED |       75.00 |" in out
    assert "/#/experiments/1/runs?workflowType=machine_learning" in out and "cells compared:" in out
    assert main(["report", str(tmp_path / "out"), "name=x"]) == 2
    assert "overrides (name=x) need a grid file" in capsys.readouterr().err


def test_a_hydra_sweep_and_a_typo_are_one_line_with_the_fix(capsys):
    assert main(["plan", QUICKSTART, "--no-cost", "optim.lr=1e-4,3e-4"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Hydra's sweep" in err and "axes.optim.lr=[1e-4,3e-4]" in err
    assert main(["plan", QUICKSTART, "--no-cost", "optim.wramup_ratio=0.2"]) == 2
    assert "unknown key; did you mean 'warmup_ratio'?" in capsys.readouterr().err


def test_the_readme_grid_example_is_the_quickstart_grid(tmp_path):
    """README "Grid files" shows grids/quickstart.yaml: loaded here, so the example cannot go stale."""
    import re
    from pathlib import Path

    from raygrid.spec.loader import load_grid

    readme = Path("README.md").read_text()
    section = readme.split("\n## Grid files\n", 1)[1]
    example = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    (tmp_path / "quickstart.yaml").write_text(example)
    shown, shipped = load_grid(tmp_path / "quickstart.yaml"), load_grid(QUICKSTART)
    assert [(c.name, c.config) for c in shown.cells] == [(c.name, c.config) for c in shipped.cells]
    assert shown.spec.resources == shipped.spec.resources and shown.name == shipped.name
