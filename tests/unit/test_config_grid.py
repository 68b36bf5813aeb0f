"""Grid files: validation errors name file and key; expansion and names are deterministic."""
from pathlib import Path

import pytest

from raygrid.spec.grid import GridError, cell_name, set_dotted, short_value
from raygrid.spec.loader import load_grid

BASE = """
name: g
base:
  data: {dataset: hyperpartisan, path: /tmp/data}
  model: {checkpoint: /tmp/ckpt}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(GridError) as err:
        load_grid(write(tmp_path, text))
    message = str(err.value)
    assert "\n" not in message, "errors are one line"
    assert str(tmp_path / "grid.yaml") in message, "errors name the file"
    return message


def test_expansion_is_the_cartesian_product_in_axis_order(tmp_path):
    grid = load_grid(write(tmp_path, BASE + "axes:\n  model.pooling: [cls, mean]\n  model.n_freeze: [0, 1, 2]\n"
                                              "  model.p_drop: [0.1, 0.2]\n  seed: [0, 1]\n"))
    assert len(grid.cells) == 2 * 3 * 2 * 2
    assert grid.cells[0].name == "pooling=cls,n_freeze=0,p_drop=0.1,seed=0"
    assert grid.cells[-1].name == "pooling=mean,n_freeze=2,p_drop=0.2,seed=1"
    assert {(c.config.model.pooling, c.config.model.n_freeze, c.config.model.p_drop, c.config.seed)
            for c in grid.cells} == {(p, n, d, s) for p in ("cls", "mean") for n in (0, 1, 2)
                                     for d in (0.1, 0.2) for s in (0, 1)}
    again = load_grid(tmp_path / "grid.yaml")
    assert [c.name for c in again.cells] == [c.name for c in grid.cells]


def test_no_axes_gives_one_base_cell(tmp_path):
    grid = load_grid(write(tmp_path, BASE))
    assert [c.name for c in grid.cells] == ["base"]
    assert grid.cells[0].config.attention.kind == "softmax"


def test_unknown_key_is_named_with_its_dotted_path(tmp_path):
    message = error_of(tmp_path, BASE.replace("checkpoint: /tmp/ckpt", "checkpoint: /tmp/ckpt, poolng: cls"))
    assert "base.model.poolng: unknown key" in message


def test_unknown_top_level_key(tmp_path):
    assert "axis: unknown key" in error_of(tmp_path, BASE + "axis: {}\n")


def test_wrong_type_names_key_and_value(tmp_path):
    message = error_of(tmp_path, BASE + "axes:\n  model.n_freeze: [0, many]\n")
    assert "axes.model.n_freeze: " in message and "'many'" in message and "cell model.n_freeze=many" in message


def test_unknown_pooling_lists_allowed_values(tmp_path):
    message = error_of(tmp_path, BASE + "axes:\n  model.pooling: [cls, max]\n")
    assert "axes.model.pooling" in message and "'cls'" in message and "'mean'" in message


def test_unknown_dataset_lists_allowed_values(tmp_path):
    message = error_of(tmp_path, BASE.replace("hyperpartisan", "imbd"))
    assert "base.data.dataset" in message and "'imdb'" in message


def test_empty_axis_is_rejected(tmp_path):
    assert "axes.model.pooling" in error_of(tmp_path, BASE + "axes:\n  model.pooling: []\n")


def test_axis_into_a_scalar_is_rejected(tmp_path):
    assert "axes.seed: " in error_of(tmp_path, BASE + "axes:\n  seed.x: [1]\n")


def test_attention_variant_parameters_are_validated(tmp_path):
    message = error_of(tmp_path, BASE + "axes:\n  attention: [{kind: favor, nb_featurs: 64}]\n")
    assert "axes.attention.nb_featurs: unknown key" in message


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(GridError, match="cannot read grid file"):
        load_grid(tmp_path / "nope.yaml")
    assert "invalid YAML" in error_of(tmp_path, "name: [unclosed\n")


def test_freeze_needs_two_epochs(tmp_path):
    message = error_of(tmp_path, BASE + "  optim: {epochs: 1}\naxes:\n  model.n_freeze: [1]\n")
    assert "n_freeze" in message and "epochs" in message


def test_relative_paths_resolve_against_the_grid_folder(tmp_path):
    grid = load_grid(write(tmp_path, BASE.replace("/tmp/data", "./data")))
    assert grid.cells[0].config.data.path == str((tmp_path / "data").resolve())


def test_dict_axis_values_merge_unless_kind_changes():
    tree = {"attention": {"kind": "favor", "nb_features": 64}, "data": {"dataset": "imdb", "max_len": 512}}
    set_dotted(tree, "data", {"max_len": 128})
    set_dotted(tree, "attention", {"kind": "lsh", "num_hashes": 2})
    assert tree["data"] == {"dataset": "imdb", "max_len": 128}
    assert tree["attention"] == {"kind": "lsh", "num_hashes": 2}


def test_names_are_readable_and_filesystem_safe():
    assert cell_name({"attention": {"kind": "lsh", "num_hashes": 2, "chunk_size": 64}}) == \
        "attention=lsh(num_hashes=2,chunk_size=64)"  # more in test_names.py
    long = short_value({"kind": "favor", "x" * 70: 1})
    assert len(long) <= 64 and "/" not in short_value("/a/b/c") and short_value("/a/b/c") == "c"


def test_study_grids_and_quickstart_validate():
    root = Path(__file__).resolve().parents[2] / "grids"
    for path in sorted(root.glob("*.yaml")):
        assert load_grid(path).cells, path


def test_axes_list_is_a_union_of_products_and_bundles_set_several_keys(tmp_path):
    grid = load_grid(write(tmp_path, BASE + """axes:
  - model.pooling: [cls, mean]
    task:
      - {label: short, set: {data.max_len: 128, optim: {epochs: 4}}}
      - {label: long, set: {data.max_len: 512}}
  - attention: [{kind: favor, nb_features: 64}]
"""))
    assert [c.name for c in grid.cells] == ["pooling=cls,task=short", "pooling=cls,task=long",
                                            "pooling=mean,task=short", "pooling=mean,task=long",
                                            "attention=favor(nb_features=64)"]
    short = grid.cells[0].config
    assert short.data.max_len == 128 and short.optim.epochs == 4 and short.optim.batch_size == 8
    assert grid.cells[1].config.data.max_len == 512 and grid.cells[1].config.optim.epochs == 3
    assert grid.cells[-1].config.attention.kind == "favor" and grid.cells[-1].config.model.pooling == "cls"


def test_bundle_with_a_bad_key_is_named(tmp_path):
    message = error_of(tmp_path, BASE + "axes:\n  task: [{label: x, set: {data.max_lenn: 1}}]\n")
    assert "data.max_lenn: unknown key" in message and "cell task=x" in message
