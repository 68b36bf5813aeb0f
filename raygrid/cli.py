"""`raygrid` command line: plan, run and report grids (every command has --help)."""
from __future__ import annotations

# argparse only at import time: every raygrid package (torch, transformers, Ray, MLflow behind
# them) is imported inside the command that needs it, so `raygrid --help`, each command's --help
# and `raygrid plan --no-cost` start in well under a second (BENCHMARKS.md).
import argparse
import signal
import sys
from functools import partial
from pathlib import Path

from raygrid.cli_tools import add_bench, add_data, add_overrides

DEFAULT_OUT = Path("runs")


def load_grid(path, overrides=()):
    """raygrid.spec.loader.load_grid, imported when a command first reads a grid."""
    from raygrid.spec.loader import load_grid as load

    return load(path, overrides=overrides)


def _version() -> str:
    """raygrid's version and those of the frameworks it drives (package metadata: nothing is imported)."""
    from importlib.metadata import PackageNotFoundError, version

    from raygrid import __version__

    found = []
    for package in ("ray", "mlflow", "torch", "transformers"):
        try:
            found.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            found.append(f"{package} (not installed)")
    return f"raygrid {__version__} ({', '.join(found)}; Python {sys.version.split()[0]})"


class _VersionAction(argparse.Action):
    """--version, worked out only when asked for (argparse's own would format it for every --help)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(_version())
        parser.exit()


def _grid_error(message: str) -> Exception:
    from raygrid.spec.grid import GridError

    return GridError(message)


def _out_dir(args) -> Path:
    """--out, else runs/: one MLflow store (one experiment per grid) for every grid, so a stage can
    start from another grid's cells and the MLflow UI compares them side by side."""
    return Path(args.out) if args.out else DEFAULT_OUT


def _scores_in(uri: str | None):
    """What `select:` chooses from: a source grid's finished scores in the MLflow store at `uri`."""
    def scores_of(grid_name: str, metric: str):
        from raygrid.tracking.runs import finished_scores  # MLflow only when a selection is resolved

        return finished_scores(uri, grid_name, metric)
    return scores_of


def cmd_plan(args) -> int:
    """Validate a grid, list its cells, their cost (tokens, FLOPs, GPU-hours) and which already finished; writes nothing."""
    from raygrid.orchestration.plan_status import existing_store, status_lines
    from raygrid.orchestration.preflight import check_cells
    from raygrid.spec.plan_notes import settings_lines
    from raygrid.spec.selection import selection_lines

    grid = load_grid(args.grid, overrides=args.overrides)

    check_cells(grid, grid.cells, hub=False)  # local checkpoints only: plan needs no network
    if grid.stage_order:
        shape = "stages " + ", ".join(f"{stage} {len(grid.stage_cells(stage))}" for stage in grid.stage_order)
    else:
        shape = " + ".join(" x ".join(f"{len(v)} {k}" for k, v in block.items()) or "base" for block in grid.blocks)
    print(f"grid {grid.name}: {len(grid.cells)} cells ({shape})")
    if grid.overrides:
        print(f"overrides: {' '.join(grid.overrides)}")
    store = existing_store(_out_dir(args))  # read-only: plan writes nothing
    shown, read = store or (None, None)
    grid, chosen = selection_lines(grid, shown, _scores_in(read))  # `select:` values, once their grid has run
    print("\n".join(settings_lines(grid) + chosen))
    lines = None
    if not args.no_cost:
        try:
            from raygrid.cost.estimate import plan_lines

            lines = plan_lines(grid, args.cache_dir)
        except Exception as err:  # the estimate is advice: fall back to the plain list
            print(f"(no cost estimate: {type(err).__name__}: {err})")
    for line in lines or [f"{i:4d}  {cell.name}" for i, cell in enumerate(grid.cells, 1)]:
        print(line)
    for line in status_lines(grid, store, _out_dir(args) / "mlflow.db"):
        print(line)
    if args.verbose:
        for cell in grid.cells:
            print(f"\n# {cell.name}\n{cell.config.model_dump_json(indent=2)}")
    return 0


def cmd_run(args) -> int:
    """Run every unfinished cell of a grid on Ray, record it in MLflow, print the tables."""
    grid = load_grid(args.grid, overrides=args.overrides)  # fails fast, before Ray or MLflow start
    from raygrid.data.cache import cache_root
    from raygrid.orchestration.launch import run_grid
    from raygrid.orchestration.preflight import check_run_paths, check_store_file
    from raygrid.tracking.runs import tracking_uri

    out = _out_dir(args)
    cache = cache_root(args.cache_dir)
    check_run_paths(grid, out, cache, args.storage)  # one line naming the path, before anything is created or started
    uri = tracking_uri(out)
    check_store_file(uri)
    run = partial(run_grid, grid, out, cache, uri, tokenize_actors=args.tokenize_actors,
                  storage=args.storage)
    try:
        if args.verbose:
            summary = run()
        else:
            from raygrid.orchestration.console import quiet_console

            with quiet_console(out / "logs") as console:
                summary = run(console=console)
            if console.log_file.exists():
                print(f"Ray's own output (config, status, worker logs): {console.log_file}")
                args.exit_log = console.log_file  # main() sends what Ray prints at exit there too
    except KeyboardInterrupt:
        from raygrid.orchestration.interrupts import exit_code, ignore_while_exiting

        if getattr(args, "program", False):  # the `raygrid` program, not a caller's main([...]): it ends now
            ignore_while_exiting()

        code = exit_code()  # the shell's code for the signal: 130 (Ctrl-C), 143 (SIGTERM, `ray job stop`)
        what = "stopped by SIGTERM" if code == 128 + signal.SIGTERM else "interrupted"
        print(f"\nraygrid: {what}; the cells that were running are recorded as KILLED in {uri}. "
              f"Rerun the same command to continue: finished cells are skipped, the others continue "
              f"from their last checkpoint.", file=sys.stderr)
        return code
    order = [cell.name for cell in grid.cells]
    _print_report(uri, grid.name, args.format, order=order)
    _print_links(uri, grid.name, order, save_view=True)
    if summary.failed:
        print(f"\n{len(summary.failed)} cell(s) failed:", file=sys.stderr)
        for name, reason in summary.failed.items():
            print(f"  {name}: {reason}", file=sys.stderr)
        return 1
    return 0


def cmd_report(args) -> int:
    """Rebuild the study's tables (and with --save its CSV/LaTeX files and figures) from MLflow alone."""
    from raygrid.tracking.runs import tracking_uri

    target = Path(args.target)
    order = None
    if target.suffix in (".yaml", ".yml"):
        grid = load_grid(target, overrides=args.overrides)
        names, uri, order = [grid.name], tracking_uri(_out_dir(args)), [cell.name for cell in grid.cells]
        _check_store(uri)
    elif target.is_dir():
        if args.overrides:
            raise _grid_error(f"{target}: overrides ({' '.join(args.overrides)}) need a grid file, not an output folder")
        uri = tracking_uri(target)
        names = _grids_in(uri)
    else:
        raise _grid_error(f"{target}: give a grid file (.yaml) or an output folder holding mlflow.db")
    _replay_spool(uri, target if target.is_dir() else _out_dir(args))
    if args.save:  # before any table is built: a read-only folder is one line, not a traceback at the end
        from raygrid.orchestration.preflight import check_writable

        check_writable(Path(args.save), "--save")
    reference = None
    if args.compare:
        from raygrid.report.compare import load_reference

        reference = load_reference(args.compare)  # a bad file fails before any table is built
    for name in names:
        _print_report(uri, name, args.format, save=args.save, reference=reference, order=order)
        if args.format == "md":  # CSV and LaTeX output stay machine-readable
            _print_links(uri, name, order)
    return 0


def _replay_spool(uri: str, out: Path) -> None:
    """What a run on this --out kept while the store was unavailable is written before the report reads it."""
    from raygrid.tracking.spool import spool_path
    from raygrid.tracking.store import replay_spool

    replay_spool(uri, spool_path(out), log=lambda line: print(line, file=sys.stderr))


def _check_store(uri: str) -> None:
    from raygrid.orchestration.preflight import check_store_file

    check_store_file(uri)  # a corrupt or truncated mlflow.db: one line naming it, not SQLAlchemy's traceback


def _grids_in(uri: str) -> list[str]:
    from raygrid.tracking.runs import grid_names

    _check_store(uri)
    names = grid_names(uri)
    if not names:
        raise _grid_error(f"{uri}: no raygrid grids recorded there")
    return names


def _print_report(uri: str, grid_name: str, fmt: str, save: str | None = None, reference=None,
                  order: list[str] | None = None) -> None:
    """Print a grid's tables (rows in `order`, the grid's); with `save`, also write tables and figures there."""
    from raygrid.report.publish import publish

    result = publish(uri, grid_name, fmt, save, reference=reference, order=order)
    print(result.text)
    for path in result.files:
        print(f"wrote {path}")


def _print_links(uri: str, grid_name: str, order: list[str] | None, save_view: bool = False) -> None:
    """Where the grid is in MLflow, and direct links to its cells (raygrid.report.links); `save_view` stores the view."""
    from raygrid.report import links

    print(f"\nMLflow: {uri}")
    try:
        if save_view:
            links.save_view(uri, grid_name)
        lines = links.link_lines(uri, grid_name, order)
    except Exception as err:  # links are a convenience: never fail a finished run over them
        lines = [f"  (no MLflow links: {type(err).__name__}: {err})"]
    for line in lines:
        print(line)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raygrid", description=__doc__)
    parser.add_argument("--version", action=_VersionAction, help="print raygrid's version (and Ray's, MLflow's, "
                        "torch's, transformers') and exit")
    sub = parser.add_subparsers(dest="command", required=True)

    plan = sub.add_parser("plan", help=cmd_plan.__doc__, description=cmd_plan.__doc__)
    plan.add_argument("grid", help="grid YAML file")
    add_overrides(plan)
    plan.add_argument("-v", "--verbose", action="store_true", help="also print each cell's resolved config")
    plan.add_argument("--no-cost", action="store_true", help="only list the cells (no tokens/FLOPs/GPU-hours)")
    plan.add_argument("--out", help="output folder whose MLflow store plan reads (read-only: finished cells, "
                      "`select:` choices); default runs/")
    plan.add_argument("--cache-dir", help="tokenized-data cache for exact token counts; default $RAYGRID_CACHE "
                      "or ~/.cache/raygrid")
    plan.set_defaults(func=cmd_plan)

    run = sub.add_parser("run", help=cmd_run.__doc__, description=cmd_run.__doc__)
    run.add_argument("grid", help="grid YAML file")
    add_overrides(run)
    run.add_argument("--out", help="output folder (MLflow SQLite, Ray results, exported stage weights); default runs/")
    run.add_argument("--cache-dir", help="tokenized-data cache; default $RAYGRID_CACHE or ~/.cache/raygrid")
    run.add_argument("--format", choices=("md", "csv", "tex"), default="md", help="table format")
    run.add_argument("-v", "--verbose", action="store_true",
                     help="show Ray's and Tune's own output (config dumps, status boxes, worker logs) instead of "
                          "raygrid's per-cell lines; by default it goes to <out>/logs/ray-<time>.log")
    run.add_argument("--storage", metavar="URI",
                     help="Ray checkpoints and stage weights: a path every node sees, or s3://, gs://; default <out>/ray")
    run.add_argument("--tokenize-actors", type=int, default=0, metavar="N",
                     help="tokenize missing cache entries on a Ray Data pool of N actors (default 0: in this process)")
    run.set_defaults(func=cmd_run)

    report = sub.add_parser("report", help=cmd_report.__doc__, description=cmd_report.__doc__)
    report.add_argument("target", help="grid YAML file, or an output folder holding mlflow.db")
    add_overrides(report, "with a grid file: the grid as overridden when it ran, e.g. name=quickstart-lr3e-4")
    report.add_argument("--out", help="the grid's output folder (with a grid file); default runs/")
    report.add_argument("--format", choices=("md", "csv", "tex"), default="md",
                        help="table format: Markdown, CSV, LaTeX (booktabs)")
    report.add_argument("--save", help="also write into this folder: <grid>.md, <grid>.tex, one CSV per table, "
                                       "PNG figures (logged to the grid's parent run too)")
    report.add_argument("--compare", metavar="REFERENCE", help="published figures (CSV: dataset, model, variant, "
                        "metric, value, source; e.g. grids/reference/study_published.csv) set beside ours, with "
                        "the difference")
    report.set_defaults(func=cmd_report)

    add_data(sub)
    add_bench(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # `raygrid run grid.yaml --out x lr=1` leaves the overrides after an option unparsed: take them too.
    if extra and hasattr(args, "overrides") and all("=" in item and not item.startswith("-") for item in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.program = argv is None
    try:
        code = args.func(args) or 0
    except (ValueError, FileNotFoundError, LookupError) as err:  # GridError is a ValueError
        from raygrid.spec.redact import redact  # an error may quote a data URI: never its credentials

        print(f"raygrid: error: {redact(str(err))}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.filename is None:  # no path to name: a bug or a network fault, keep its traceback
            raise
        # a folder or file that cannot be written late in a command (a disk filled up, a mount turned read-only)
        print(f"raygrid: error: {err.filename}: {err.strerror}", file=sys.stderr)
        return 2
    if argv is None and getattr(args, "exit_log", None):  # the `raygrid` program (not a caller's main([...]))
        from raygrid.orchestration.console import divert_the_rest

        divert_the_rest(args.exit_log)
    return code


if __name__ == "__main__":
    sys.exit(main())
