"""`raygrid bench loop`'s bookkeeping: which cells it accepts, and how the comparison is computed."""
import pytest

from raygrid.bench.loop import pick_cell, render
from raygrid.spec.grid import GridError
from raygrid.spec.loader import load_grid
from tests.conftest import tiny_grid_yaml


def test_pick_cell_takes_the_named_or_first_model_cell_and_refuses_the_rest(tiny_checkpoint, tmp_path):
    grid_file = tmp_path / "g.yaml"
    grid_file.write_text(tiny_grid_yaml(tiny_checkpoint, axes="  - model.pooling: [cls, mean]\n  - kind: [tfidf]\n"))
    grid = load_grid(grid_file)
    assert pick_cell(grid, None).name == "pooling=cls" and pick_cell(grid, "pooling=mean").name == "pooling=mean"
    with pytest.raises(GridError, match="no cell named"):
        pick_cell(grid, "pooling=max")
    with pytest.raises(GridError, match="has no model"):
        pick_cell(grid, "kind=tfidf")


def test_render_compares_tokens_per_s_and_splits_the_wall_time(tiny_checkpoint, tmp_path):
    grid_file = tmp_path / "g.yaml"
    grid_file.write_text(tiny_grid_yaml(tiny_checkpoint))
    cell = load_grid(grid_file).cells[0]
    bare = {"tokens_per_s": 1000.0, "train_time_s": 50.0, "model_load_s": 2.0, "data_load_s": 1.0,
            "eval_time_s": 5.0, "checkpoint_time_s": 0.0, "wall_s": 60.0}
    ray = {**bare, "tokens_per_s": 960.0, "checkpoint_time_s": 3.0, "worker_start_s": 4.0, "ray_start_s": 6.0,
           "store_open_s": 1.5, "before_trial_s": 2.5, "teardown_s": 1.0, "after_trial_s": 0.5, "wall_s": 80.0}
    text = render(cell, bare, ray, "cpu")
    assert "keeps 96.0% of the bare loop's tokens/s" in text and "| 960 (0.96x) |" in text
    # Ray's start and the store's schema are once per run / store: outside the wall and the rest
    assert ray["rest_s"] == pytest.approx(80 - 50 - 2 - 1 - 5 - 3 - 2.5 - 4 - 1 - 0.5) and bare["rest_s"] == pytest.approx(2.0)
    assert "| overhead = wall - training s | 10.0 | 30.0 |" in text
    assert "| **overhead beyond the bare loop s** | | **20.0** |" in text
    assert "| Ray teardown after the final report s | - | 1.0 |" in text
    assert "Ray start s (not in wall) | - | 6.0 |" in text and "schema s (not in wall) | - | 1.5 |" in text
