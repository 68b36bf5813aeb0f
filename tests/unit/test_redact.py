"""URI credentials never reach what raygrid writes (MLflow params/artifacts, meta.json, Tune's payload, errors)."""
import json

import pytest

from raygrid.data.cache import publish_entry
from raygrid.orchestration.finished import finished_cells
from raygrid.orchestration.payload import PARAM_KEY, TrialPayload
from raygrid.spec.loader import load_grid
from raygrid.spec.redact import redact, redact_tree
from raygrid.tracking.cell_params import cell_params, config_yaml
from raygrid.tracking.runs import GridTracker
from tests.unit.test_cell_identity import QUICKSTART, record

SECRET = "s3cr3t-P4ss"
URI = f"https://alice:{SECRET}@data.example.org/hyperpartisan"
PRESIGNED = ("https://bucket.s3.amazonaws.com/train.parquet?X-Amz-Algorithm=AWS4-HMAC-SHA256"
             f"&X-Amz-Credential=AKIA{SECRET}&X-Amz-Signature={SECRET}&X-Amz-Expires=3600")


@pytest.mark.parametrize("text, expected", [
    (URI, "https://alice:***@data.example.org/hyperpartisan"),
    (PRESIGNED, "https://bucket.s3.amazonaws.com/train.parquet?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                "&X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Expires=3600"),
    (f"https://acct.blob.core.windows.net/c/f?sv=2022&sig={SECRET}&se=1", "https://acct.blob.core.windows.net/c/f?sv=2022&sig=***&se=1"),
    (f"https://host/data?token={SECRET}&page=2", "https://host/data?token=***&page=2"),
    (f"error: cannot read {URI}/train.csv (404)", "error: cannot read https://alice:***@data.example.org/hyperpartisan/train.csv (404)"),
])
def test_credentials_are_masked(text, expected):
    assert redact(text) == expected and SECRET not in redact(text)


@pytest.mark.parametrize("text", ["s3://bucket/key", "ssh://git@github.com/x", "http://127.0.0.1:5000",
                                  "sqlite:////tmp/runs/mlflow.db", "https://h/x?monkey=1&revision=main",
                                  "pkg://raygrid/resources/hyperpartisan_sample", "lr=2e-4"])
def test_text_without_credentials_is_unchanged(text):
    assert redact(text) == text


def _grid_with_secret():
    return load_grid(QUICKSTART, overrides=[f"data.path={URI}"])


def test_mlflow_params_and_config_yaml_hold_no_secret():
    cell = _grid_with_secret().cells[0]
    config = cell.config.model_dump(mode="json")
    params = cell_params(config, {"model.pooling": "cls"})
    assert params["data.path"] == "https://alice:***@data.example.org/hyperpartisan"
    assert SECRET not in json.dumps(params) and SECRET not in config_yaml(config)
    assert cell.config.data.path == URI  # what is used keeps the credential


def test_a_finished_cell_with_a_secret_in_its_uri_is_still_skipped(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    grid = _grid_with_secret()
    tracker, ids = record(uri, grid)
    tracker.log_grid(grid.text + f"\n# data at {URI}\n", "grid.yaml", len(grid.cells))
    assert finished_cells(_grid_with_secret(), uri).runs == ids  # redacted params compare equal
    client = GridTracker(uri, grid.name).client
    run = client.get_run(ids[grid.cells[0].name])
    assert SECRET not in json.dumps(run.data.params)
    artifacts = tmp_path / "mlartifacts"
    written = [p.read_text() for p in tmp_path.rglob("*.yaml")]
    assert written and not any(SECRET in text for text in written), artifacts


def test_cache_meta_json_holds_no_secret(tmp_path):
    build = tmp_path / ".entry-build"
    build.mkdir()
    entry = publish_entry(build, str(tmp_path / "entry"), {"data": {"path": URI}, "source": {"train": f"{URI}/train.csv"}})
    text = (tmp_path / "entry" / "meta.json").read_text()
    assert SECRET not in text and entry.meta["data"]["path"] == "https://alice:***@data.example.org/hyperpartisan"


def test_tunes_payload_holds_no_secret_when_the_trial_reads_the_cache():
    cell = _grid_with_secret().cells[0]
    payload = TrialPayload(name=cell.name, config=cell.config, axis={}, data_dir="/cache/x", resources=cell.resources,
                           use_gpu=False, storage_path="/runs/ray/train")
    wire = json.dumps({PARAM_KEY: payload.to_tune()})
    assert SECRET not in wire
    assert TrialPayload.from_tune(json.loads(wire)).config.data.path.startswith("https://alice:***@")
    raw = payload.model_copy(update={"data_dir": None})  # TF-IDF: the trial reads data.path itself
    assert SECRET in json.dumps(raw.to_tune())


def test_a_one_line_error_quoting_the_uri_hides_the_secret(tmp_path, capsys):
    from raygrid.cli import main

    grid = tmp_path / "g.yaml"
    grid.write_text(f"name: g\nbase:\n  data: {{dataset: imdb, max_len: '{URI}'}}\n  model: {{checkpoint: x}}\n")
    assert main(["plan", str(grid), "--no-cost"]) == 2
    err = capsys.readouterr().err
    assert "data.max_len" in err and "alice:***@" in err and SECRET not in err


def test_redact_tree_keeps_non_strings():
    assert redact_tree({"a": [URI, 1, None, 2.5], "b": True}) == \
        {"a": ["https://alice:***@data.example.org/hyperpartisan", 1, None, 2.5], "b": True}
