"""Bad paths, files and settings are refused in one line naming the path or key, before Ray or MLflow start."""
import os
import sqlite3
from pathlib import Path

import pytest

from raygrid.cli import main
from raygrid.orchestration.preflight import check_store_file, check_writable
from raygrid.spec.grid import GridError
from raygrid.spec.loader import load_grid
from raygrid.spec.yaml_rules import MAX_YAML_DEPTH

QUICKSTART = Path(__file__).resolve().parents[2] / "grids" / "quickstart.yaml"


@pytest.fixture(autouse=True)
def _local_store(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("raygrid: error:"), err
    assert len(err.splitlines()) == 1, err
    return err


def _read_only_folder(tmp_path: Path) -> Path:
    """A folder this process cannot write into: chmod for a user; root ignores modes, and /sys refuses it too."""
    if os.geteuid() == 0:
        return Path("/sys/raygrid-test")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


def test_a_read_only_out_is_one_line_naming_it(tmp_path, capsys):
    out = _read_only_folder(tmp_path) / "out"
    assert main(["run", str(QUICKSTART), "--out", str(out), "--cache-dir", str(tmp_path / "cache")]) == 2
    err = _one_error_line(capsys)
    assert "--out" in err and str(out) in err and "cannot write" in err


def test_a_read_only_cache_dir_is_one_line_naming_it(tmp_path, capsys):
    cache = _read_only_folder(tmp_path)
    assert main(["run", str(QUICKSTART), "--out", str(tmp_path / "out"), "--cache-dir", str(cache)]) == 2
    err = _one_error_line(capsys)
    assert "--cache-dir" in err and str(cache) in err
    assert not (tmp_path / "out" / "mlflow.db").exists()


def test_an_out_that_is_a_file_is_refused(tmp_path, capsys):
    out = tmp_path / "runs"
    out.write_text("not a folder")
    assert main(["run", str(QUICKSTART), "--out", str(out / "sub"), "--cache-dir", str(tmp_path / "c")]) == 2
    err = _one_error_line(capsys)
    assert f"{out} is a file" in err


def test_a_grid_name_longer_than_the_file_system_allows_is_refused_with_the_limit(tmp_path, capsys):
    grid = tmp_path / "long.yaml"
    grid.write_text(QUICKSTART.read_text().replace("name: quickstart", "name: " + "n" * 300))
    assert main(["run", str(grid), "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "c")]) == 2
    err = _one_error_line(capsys)
    assert str(grid) in err and "name: 300 characters" in err and "limits to 255" in err


def test_report_save_into_a_read_only_folder_is_one_line(tmp_path, capsys):
    save = _read_only_folder(tmp_path) / "tables"
    assert main(["report", str(QUICKSTART), "--out", str(tmp_path / "out"), "--save", str(save)]) == 2
    err = _one_error_line(capsys)
    assert "--save" in err and str(save) in err


def test_a_corrupt_mlflow_db_is_refused_naming_it_and_what_to_do(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mlflow.db").write_bytes(b"\x00garbage, not sqlite" * 50)
    assert main(["run", str(QUICKSTART), "--out", str(out), "--cache-dir", str(tmp_path / "c")]) == 2
    err = _one_error_line(capsys)
    assert str(out / "mlflow.db") in err and "not a database" in err and "move it away" in err


def test_a_truncated_mlflow_db_is_refused(tmp_path):
    db = tmp_path / "mlflow.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (x TEXT)")
        conn.executemany("INSERT INTO t VALUES (?)", [("x" * 500,)] * 200)
    conn.close()
    check_store_file(f"sqlite:///{db}")  # whole: accepted
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])
    with pytest.raises(GridError, match="truncated"):
        check_store_file(f"sqlite:///{db}")


def test_check_writable_accepts_a_new_folder(tmp_path):
    check_writable(tmp_path / "a" / "b", "--out")
    assert (tmp_path / "a" / "b").is_dir() and not list((tmp_path / "a" / "b").iterdir())


def test_a_deeply_nested_yaml_list_is_one_line_naming_the_file(tmp_path):
    grid = tmp_path / "deep.yaml"
    grid.write_text("name: x\nbase: " + "[" * 20_000 + "]" * 20_000 + "\n")
    with pytest.raises(GridError) as err:
        load_grid(grid)
    assert str(grid) in str(err.value) and f"more than {MAX_YAML_DEPTH} levels" in str(err.value)


def test_a_binary_grid_file_is_one_line_naming_it(tmp_path):
    grid = tmp_path / "model.yaml"
    grid.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(GridError, match=f"{grid}: not a text file"):
        load_grid(grid)
    grid.write_bytes(b"name: x\x00\x00\x00base: {}\n")
    with pytest.raises(GridError, match="NUL bytes"):
        load_grid(grid)


def test_a_duplicated_key_is_refused_naming_file_line_and_key(tmp_path):
    text = QUICKSTART.read_text().replace("    pooling: cls\n", "    pooling: cls\n    pooling: mean\n")
    grid = tmp_path / "dup.yaml"
    grid.write_text(text)
    line = text.splitlines().index("    pooling: mean") + 1
    with pytest.raises(GridError) as err:
        load_grid(grid)
    assert f"{grid}: line {line}: key 'pooling' is written twice" in str(err.value)


def test_yaml_merge_keys_may_still_be_overridden(tmp_path):
    text = QUICKSTART.read_text().replace("  seed: 0\n", "  seed: 0\nx-common: &common {seed: 1}\n")
    grid = tmp_path / "merge.yaml"
    grid.write_text(text.replace("x-common: &common {seed: 1}\n", ""))
    assert load_grid(grid).cells  # sanity: the edited grid loads
    from raygrid.spec.yaml_rules import StrictYamlRules
    import yaml

    tree = yaml.load("a: &a {x: 1, y: 2}\nb:\n  <<: *a\n  x: 3\n", Loader=StrictYamlRules)  # noqa: S506
    assert tree["b"] == {"x": 3, "y": 2}


@pytest.mark.parametrize("key", ["cpus_per_worker", "gpus_per_worker", "data_cpus"])
def test_resources_too_small_for_ray_are_refused_with_the_minimum(tmp_path, key):
    with pytest.raises(GridError) as err:
        load_grid(QUICKSTART, overrides=[f"resources.{key}=1.0e-9"])
    message = str(err.value)
    assert f"resources.{key}" in message and "0.0001" in message and "Ray" in message


def test_a_quarter_gpu_is_still_accepted(tmp_path):
    assert load_grid(QUICKSTART, overrides=["resources.gpus_per_worker=0.25"]).cells[0].resources.gpus_per_worker == 0.25


def test_data_prepare_into_a_read_only_cache_is_one_line(tmp_path, capsys):
    cache = _read_only_folder(tmp_path)
    assert main(["data", "prepare", str(QUICKSTART), "--cache-dir", str(cache)]) == 2
    err = _one_error_line(capsys)
    assert "--cache-dir" in err and str(cache) in err


def test_a_read_only_local_storage_is_refused(tmp_path, capsys):
    storage = _read_only_folder(tmp_path) / "ray"
    assert main(["run", str(QUICKSTART), "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "c"),
                 "--storage", str(storage)]) == 2
    assert "--storage" in _one_error_line(capsys)


def test_report_on_a_corrupt_mlflow_db_is_one_line(tmp_path, capsys):
    (tmp_path / "mlflow.db").write_bytes(b"\x07not sqlite at all" * 100)
    assert main(["report", str(tmp_path)]) == 2
    assert "not a database" in _one_error_line(capsys)
