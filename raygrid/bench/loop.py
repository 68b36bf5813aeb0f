"""`raygrid bench loop`: what Ray costs a cell. One cell's training loop runs twice on the same data,
device and thread count: bare (raygrid.training.train_loop.fit in this process, no Ray, no checkpoints) and
through raygrid (`raygrid run` of that one cell: Tune -> Train -> MLflow, fresh store).

Printed: training tokens/s of each and their ratio, then where each wall time goes: model load, data
load, evaluation, checkpoints (measured inside the loop, reported as cell metrics), the Train worker
group's start (driver to worker function), and from the cell run's MLflow timestamps
(raygrid.tracking.timeline): before the trial (finished-cell check, Tuner, the trial's
process), Ray's teardown after the final report, and after the trial (the grid's summary and report).
The rest is what no clock covers (Tune's and Train's report round trips). Ray's start and a new
MLflow store's schema are paid once per `raygrid run` and once per store, so they are shown apart
and not counted in the per-cell overhead. Overhead = wall time minus training time.
"""
from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

from raygrid.spec.grid import Cell, Grid, GridError
from raygrid.spec.loader import load_grid
from raygrid.training import metric_names as M

PARTS = (("model load", M.MODEL_LOAD_S), ("data load", M.DATA_LOAD_S), ("evaluation", M.EVAL_TIME_S),
         ("checkpoints", M.CHECKPOINT_TIME_S),
         ("before the trial (finished cells, Tuner, trial process)", "before_trial_s"),
         ("Train worker group start (trial to worker function)", M.WORKER_START_S),
         ("Ray teardown after the final report", "teardown_s"),
         ("after the trial (grid summary, report to MLflow)", "after_trial_s"))


def pick_cell(grid: Grid, name: str | None) -> Cell:
    """The named cell (default: the first); cells that need another stage's weights or no model are refused."""
    cells = [c for c in grid.cells if name is None or c.name == name]
    if not cells:
        raise GridError(f"{grid.path}: no cell named {name!r} (cells: {', '.join(c.name for c in grid.cells)})")
    cell = cells[0]
    if cell.parent is not None or cell.config.kind == "tfidf":
        raise GridError(f"{grid.path}: cell {cell.name} {'starts from another stage' if cell.parent else 'has no model'}"
                        "; bench loop needs a cell that trains from a checkpoint")
    return cell


def bare_loop(cell: Cell, data, cpus: float, use_gpu: bool) -> dict:
    """fit() in this process on the cell's cached splits; its final metrics plus the wall time split."""
    import torch

    from raygrid.training.cell_model import build_cell_model
    from raygrid.training.loaders import stream_loaders
    from raygrid.training.train_loop import fit

    torch.set_num_threads(max(1, round(cpus)))  # as the Train worker does
    device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
    started = time.perf_counter()
    model, objective = build_cell_model(cell.config, data)
    model = model.to(device)
    loaded = time.perf_counter()
    # The cache's files streamed as a trial's worker streams its shards (raygrid.data.stream_batches).
    loaders = stream_loaders(cell.config, data.stream_split, data.split_rows, data.meta["pad_token_id"],
                             pin_memory=device.type == "cuda")
    read = time.perf_counter()
    final = fit(cell.config, model, loaders, objective, device, lambda metrics, state: None)
    return {**final, M.MODEL_LOAD_S: loaded - started, M.DATA_LOAD_S: read - loaded,
            "wall_s": time.perf_counter() - started}


def raygrid_loop(grid: Grid, cell: Cell, cache_dir: str, out: Path) -> dict:
    """`raygrid run` of this one cell into a fresh MLflow store; the cell's metrics plus wall times."""
    from raygrid.orchestration import launch
    from raygrid.orchestration.cluster import init_ray
    from raygrid.tracking.runs import fetch_runs, tracking_uri

    from raygrid.tracking.store import open_store
    from raygrid.tracking.timeline import cell_times

    started = time.perf_counter()
    init_ray()  # timed apart: Ray's start is paid once per `raygrid run`, not per trial
    ray_start = time.perf_counter() - started
    one = dataclasses.replace(grid, cells=[cell], stage_order=[cell.stage] if cell.stage else [])
    uri = tracking_uri(out)
    started = time.perf_counter()
    open_store(uri)  # timed apart: a new store's schema is paid once per store
    store_open = time.perf_counter() - started
    started, began = time.perf_counter(), time.time()
    summary = launch.run_grid(one, out, cache_dir, uri, log=lambda *_: None)
    wall, finished = time.perf_counter() - started, time.time()
    if summary.failed:
        raise GridError(f"bench loop: cell {cell.name} failed under raygrid: {summary.failed[cell.name]}")
    row = fetch_runs(uri, grid.name).iloc[0]
    metrics = {k[len("metrics."):]: float(v) for k, v in row.items() if k.startswith("metrics.")}
    times = cell_times(uri, grid.name, cell.name)
    return {**metrics, "ray_start_s": ray_start, "store_open_s": store_open, "wall_s": wall,
            "before_trial_s": times.started - began, "teardown_s": times.ended - times.final_report,
            "after_trial_s": finished - times.ended}


def render(cell: Cell, bare: dict, ray: dict, device: str) -> str:
    """The comparison as a Markdown table (what BENCHMARKS.md shows)."""
    ratio = ray[M.TOKENS_PER_S] / bare[M.TOKENS_PER_S]
    lines = [f"cell `{cell.name}` on {device}: raygrid keeps {ratio:.1%} of the bare loop's tokens/s", "",
             "| | bare loop | raygrid (Tune -> Train) |", "|---|---|---|",
             f"| training tokens/s | {bare['tokens_per_s']:,.0f} | {ray['tokens_per_s']:,.0f} ({ratio:.2f}x) |",
             f"| training time s | {bare['train_time_s']:.1f} | {ray['train_time_s']:.1f} |"]
    for label, key in PARTS:
        lines.append(f"| {label} s | {_s(bare.get(key))} | {_s(ray.get(key))} |")
    for side in (bare, ray):
        side["rest_s"] = side["wall_s"] - side[M.TRAIN_TIME_S] - sum(side.get(k) or 0 for _, k in PARTS)
    bare_overhead, ray_overhead = (side["wall_s"] - side[M.TRAIN_TIME_S] for side in (bare, ray))
    lines += [f"| rest (Tune/Train report round trips, no clock) s | {bare['rest_s']:.1f} | {ray['rest_s']:.1f} |",
              f"| wall s | {bare['wall_s']:.1f} | {ray['wall_s']:.1f} |",
              f"| overhead = wall - training s | {bare_overhead:.1f} | {ray_overhead:.1f} |",
              f"| **overhead beyond the bare loop s** | | **{ray_overhead - bare_overhead:.1f}** |",
              f"| once per `raygrid run`: Ray start s (not in wall) | - | {ray['ray_start_s']:.1f} |",
              f"| once per store: a new MLflow store's schema s (not in wall) | - | {ray['store_open_s']:.1f} |"]
    return "\n".join(lines)


def _s(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def add_arguments(parser) -> None:
    parser.add_argument("grid", help="grid YAML file")
    parser.add_argument("--cell", help="cell name (default: the grid's first cell)")
    parser.add_argument("--cache-dir", help="tokenized cache; default $RAYGRID_CACHE or ~/.cache/raygrid")
    parser.add_argument("--out", help="output folder of the raygrid run (default: a temporary folder)")


def main(args) -> int:
    from raygrid.data.cache import cache_root
    from raygrid.data.prepare import prepare_cells

    grid = load_grid(args.grid, overrides=getattr(args, "overrides", ()))
    cell = pick_cell(grid, args.cell)
    cache = cache_root(args.cache_dir)
    data = prepare_cells([cell], cache, progress=False)[cell.name]
    res = grid.spec.resources
    bare = bare_loop(cell, data, res.cpus_per_worker, res.use_gpu is not False)
    with tempfile.TemporaryDirectory() as tmp:
        ray = raygrid_loop(grid, cell, cache, Path(args.out or tmp))
    import torch

    device = torch.cuda.get_device_name(0) if res.use_gpu is not False and torch.cuda.is_available() else "cpu"
    print(render(cell, bare, ray, device))
    return 0
