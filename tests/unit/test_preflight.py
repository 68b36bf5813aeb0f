"""Cells their checkpoint cannot run are refused before Ray starts, in one line naming file, key and cell."""
import shutil

import pytest

from raygrid.cli import main
from raygrid.spec.grid import GridError
from raygrid.spec.loader import load_grid
from raygrid.orchestration.preflight import check_cells, offline_hint
from tests.conftest import tiny_grid_yaml


def refusal(tmp_path, checkpoint, axes, hub=True) -> str:
    path = tmp_path / "g.yaml"
    path.write_text(tiny_grid_yaml(checkpoint, axes=axes))
    grid = load_grid(path)
    with pytest.raises(GridError) as err:
        check_cells(grid, grid.cells, hub=hub)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


def test_n_freeze_beyond_the_layers(tmp_path, tiny_checkpoint):
    message = refusal(tmp_path, tiny_checkpoint, "  model.n_freeze: [1, 3]\n")
    assert "model.n_freeze: 3 is more than the checkpoint's 2 layers (cell n_freeze=3)" in message


def test_config_overrides_count(tmp_path, tiny_checkpoint):
    message = refusal(tmp_path, tiny_checkpoint, "  model.n_freeze: [2]\n  model.config_overrides: [{num_hidden_layers: 1}]\n")
    assert "1 layers" in message


def test_max_len_beyond_the_positions_unless_extended(tmp_path, tiny_checkpoint):
    message = refusal(tmp_path, tiny_checkpoint, "  data.max_len: [600]\n")
    assert "data.max_len: 600 exceeds the checkpoint's 512 learned positions" in message
    path = tmp_path / "ok.yaml"
    path.write_text(tiny_grid_yaml(tiny_checkpoint, axes="  data.max_len: [600]\n  model.extend_positions: [true]\n"))
    grid = load_grid(path)
    check_cells(grid, grid.cells)  # extended: fine


def test_lsh_chunks_longer_than_the_input(tmp_path, tiny_checkpoint):
    message = refusal(tmp_path, tiny_checkpoint, "  attention: [{kind: lsh, chunk_size: 128}]\n")
    assert "attention.chunk_size: 128 is longer than data.max_len 64" in message


def test_missing_checkpoint_and_folder_without_config(tmp_path, tiny_checkpoint):
    assert f"model.checkpoint: {tmp_path / 'nowhere'} does not exist" in refusal(tmp_path, tmp_path / "nowhere",
                                                                                "  seed: [0]\n")
    bare = tmp_path / "bare"
    shutil.copytree(tiny_checkpoint, bare)
    (bare / "config.json").unlink()
    assert f"model.checkpoint: {bare} has no config.json" in refusal(tmp_path, bare, "  seed: [0]\n")


class ConnectError(Exception):
    """Named like httpx's: how a hub request fails without network."""


def test_an_unreachable_hub_id_names_the_key_and_suggests_a_local_folder(tmp_path, monkeypatch):
    import transformers

    def offline(*args, **kwargs):
        raise OSError("could not fetch") from ConnectError("[Errno -3] name resolution")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", offline)
    message = refusal(tmp_path, "someorg/some-model", "  seed: [0]\n")
    assert "model.checkpoint: cannot reach the Hugging Face hub for 'someorg/some-model'" in message
    assert "ConnectError" not in message and "local folder" in message


def test_plan_checks_local_checkpoints_without_network(tmp_path, tiny_checkpoint, capsys):
    path = tmp_path / "g.yaml"
    path.write_text(tiny_grid_yaml(tiny_checkpoint, axes="  model.n_freeze: [3]\n"))
    assert main(["plan", str(path), "--no-cost"]) == 2
    assert "model.n_freeze: 3 is more than" in capsys.readouterr().err
    path.write_text(tiny_grid_yaml("someorg/some-model", axes="  seed: [0]\n"))
    assert main(["plan", str(path), "--no-cost"]) == 0  # hub ids are only checked by `run`


def test_offline_hint_only_for_network_errors():
    assert offline_hint(ValueError("bad"), "imdb") is None
    try:
        raise RuntimeError("x") from ConnectError("y")
    except RuntimeError as err:
        assert offline_hint(err, "imdb").startswith("data.dataset: cannot reach the Hugging Face hub for imdb")
