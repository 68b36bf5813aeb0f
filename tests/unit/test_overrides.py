"""Command-line overrides: applied to the YAML tree before validation, so they fail exactly like file keys."""
import pytest

from raygrid.spec.grid import GridError
from raygrid.spec.loader import load_grid
from raygrid.spec.overrides import parse_overrides

QUICKSTART = "grids/quickstart.yaml"
CHAIN = "grids/quickstart_chain.yaml"


def error(path, overrides) -> str:
    with pytest.raises(GridError) as caught:
        load_grid(path, overrides=overrides)
    return str(caught.value)


def test_an_override_changes_every_cell_and_is_typed_like_the_file():
    plain = load_grid(QUICKSTART)
    grid = load_grid(QUICKSTART, overrides=["optim.lr=3e-4", "optim.epochs=3", "model.checkpoint=./x"])
    assert [c.name for c in grid.cells] == [c.name for c in plain.cells]  # names come from axes only
    assert {c.config.optim.lr for c in grid.cells} == {3e-4} and {c.config.optim.epochs for c in grid.cells} == {3}
    assert isinstance(grid.cells[0].config.optim.lr, float)
    assert all(c.config.model.checkpoint.endswith("/x") and c.config.model.checkpoint.startswith("/")
               for c in grid.cells)  # a command-line path is relative to the current folder
    assert grid.overrides == ("optim.lr=3e-4", "optim.epochs=3", "model.checkpoint=./x") and plain.overrides == ()
    assert grid.text == plain.text  # the file as written; the overrides are recorded beside it


def test_top_level_prefixes_address_axes_resources_and_name():
    grid = load_grid(QUICKSTART, overrides=["axes.seed=[0,1]", "axes.model.pooling=[mean]",
                                            "resources.max_concurrent_trials=1", "name=quickstart-lr"])
    assert len(grid.cells) == 2 * 2 * 2 and grid.cells[0].name == "pooling=mean,n_freeze=0,p_drop=0.1,seed=0"
    assert grid.spec.resources.max_concurrent_trials == 1 and grid.name == "quickstart-lr"
    assert {c.config.seed for c in grid.cells} == {0, 1}


def test_a_bad_override_fails_like_a_bad_file_key_and_says_override(tmp_path):
    msg = error(QUICKSTART, ["optim.lr=-1"])
    assert msg.startswith(f"{QUICKSTART}: base.optim.lr (override 'optim.lr=-1'): Input should be greater than 0")
    # the same mistake written in the file reads the same, less the marker
    text = open(QUICKSTART).read().replace("lr: 2.0e-4", "lr: -1")
    assert "lr: -1" in text
    (tmp_path / "q.yaml").write_text(text)
    from_file = error(tmp_path / "q.yaml", [])
    assert from_file.split(": ", 1)[1] == msg.split(": ", 1)[1].replace(" (override 'optim.lr=-1')", "")
    assert "(override 'optim.lrr=1'): unknown key" in error(QUICKSTART, ["optim.lrr=1"])
    assert error(QUICKSTART, ["resources.max_concurrent_trials=0"]).startswith(
        f"{QUICKSTART}: resources.max_concurrent_trials (override 'resources.max_concurrent_trials=0'): ")
    assert "numbers must be finite" in error(QUICKSTART, ["optim.lr=.nan"])
    assert "axes.seed (override): invalid YAML value '[0,1'" in error(QUICKSTART, ["axes.seed=[0,1"])
    assert "expected key=value" in error(QUICKSTART, ["optim.lr"])


def test_an_override_no_cell_would_feel_is_refused_naming_what_sets_the_key():
    assert "every cell takes model.pooling from its axis model.pooling" in error(QUICKSTART, ["model.pooling=mean"])
    # both stages of the chain set their own optim.lr: the grid base's is never used
    assert "every stage sets it" in error(CHAIN, ["optim.lr=1e-3"])


def test_stage_overrides_reach_one_stage_only_and_errors_name_it():
    grid = load_grid(CHAIN, overrides=["stages.tapt.optim.epochs=2", "data.max_len=64"])
    assert {c.config.optim.epochs for c in grid.stage_cells("tapt")} == {2}
    assert {c.config.optim.epochs for c in grid.stage_cells("finetune")} == {2}  # the file's own value
    assert {c.config.data.max_len for c in grid.cells} == {64}
    msg = error(CHAIN, ["stages.tapt.optim.lr=-3"])
    assert msg.startswith(f"{CHAIN}: stages.tapt.base.optim.lr (override 'stages.tapt.optim.lr=-3'): ")
    assert "no stage 'nope'" in error(CHAIN, ["stages.nope.optim.lr=1"])


def test_values_are_yaml_scalars_and_flow_collections():
    values = {o.key: o.value for o in parse_overrides(["a=1e-4", "b=[0, 1]", "c={kind: favor}", "d=mean",
                                                         "e=true", "f=null", "axes.x=[1e-3]"])}
    assert values == {"base.a": 1e-4, "base.b": [0, 1], "base.c": {"kind": "favor"}, "base.d": "mean",
                      "base.e": True, "base.f": None, "axes.x": [1e-3]}
