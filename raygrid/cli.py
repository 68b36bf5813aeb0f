"""`raygrid` command line: plan, run and report grids (every command has --help)."""
from __future__ import annotations

# argparse only at import time: every raygrid package (torch, transformers, Ray, MLflow behind
# them) is imported inside the command that needs it, so `raygrid --help`, each command's --help
# and `raygrid plan --no-cost` start in well under a second (BENCHMARKS.md).
import argparse
import sys
from functools import partial
from pathlib import Path

DEFAULT_OUT = Path("runs")


def load_grid(path, overrides=()):
    """raygrid.spec.loader.load_grid, imported when a command first reads a grid."""
    from raygrid.spec.loader import load_grid as load

    return load(path, overrides=overrides)


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
    """Validate a grid, list its cells and predict their cost (tokens, FLOPs, GPU-hours); starts nothing."""
    from raygrid.spec.plan_notes import settings_lines
    from raygrid.spec.selection import selection_lines

    grid = load_grid(args.grid, overrides=args.overrides)
    from raygrid.orchestration.preflight import check_cells

    check_cells(grid, grid.cells, hub=False)  # local checkpoints only: plan needs no network
    if grid.stage_order:
        shape = "stages " + ", ".join(f"{stage} {len(grid.stage_cells(stage))}" for stage in grid.stage_order)
    else:
        shape = " + ".join(" x ".join(f"{len(v)} {k}" for k, v in block.items()) or "base" for block in grid.blocks)
    print(f"grid {grid.name}: {len(grid.cells)} cells ({shape})")
    if grid.overrides:
        print(f"overrides: {' '.join(grid.overrides)}")
    uri = _existing_store(args)
    grid, chosen = selection_lines(grid, uri, _scores_in(uri))  # `select:` values, once their grid has run
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
    if args.verbose:
        for cell in grid.cells:
            print(f"\n# {cell.name}\n{cell.config.model_dump_json(indent=2)}")
    return 0


def _existing_store(args) -> str | None:
    """The MLflow URI `run` would use, or None when there is none yet (plan creates nothing)."""
    import os

    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    database = _out_dir(args) / "mlflow.db"
    return f"sqlite:///{database.resolve()}" if database.is_file() else None


def cmd_run(args) -> int:
    """Run every unfinished cell of a grid on Ray, record it in MLflow, print the tables."""
    grid = load_grid(args.grid, overrides=args.overrides)  # fails fast, before Ray or MLflow start
    from raygrid.data.cache import cache_root
    from raygrid.orchestration.launch import run_grid
    from raygrid.tracking.runs import tracking_uri

    out = _out_dir(args)
    uri = tracking_uri(out)
    run = partial(run_grid, grid, out, cache_root(args.cache_dir), uri, tokenize_actors=args.tokenize_actors,
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
        print(f"\nraygrid: interrupted; the cells that were running are recorded as KILLED in {uri}. "
              f"Rerun the same command to continue: finished cells are skipped, the others start again "
              f"from scratch.", file=sys.stderr)
        return 130  # the shell's code for SIGINT
    _print_report(uri, grid.name, args.format)
    print(f"\nMLflow: {uri}\n  view with: mlflow ui --backend-store-uri {uri}")
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
    if target.suffix in (".yaml", ".yml"):
        grid = load_grid(target)
        names, uri = [grid.name], tracking_uri(_out_dir(args))
    elif target.is_dir():
        uri = tracking_uri(target)
        names = _grids_in(uri)
    else:
        raise _grid_error(f"{target}: give a grid file (.yaml) or an output folder holding mlflow.db")
    reference = None
    if args.compare:
        from raygrid.report.compare import load_reference

        reference = load_reference(args.compare)  # a bad file fails before any table is built
    for name in names:
        _print_report(uri, name, args.format, save=args.save, reference=reference)
    return 0


def _grids_in(uri: str) -> list[str]:
    from raygrid.tracking.runs import grid_names

    names = grid_names(uri)
    if not names:
        raise _grid_error(f"{uri}: no raygrid grids recorded there")
    return names


def _print_report(uri: str, grid_name: str, fmt: str, save: str | None = None, reference=None) -> None:
    """Print a grid's tables; with `save`, also write tables and figures there (raygrid.report.publish)."""
    from raygrid.report.publish import publish

    result = publish(uri, grid_name, fmt, save, reference=reference)
    print(result.text)
    for path in result.files:
        print(f"wrote {path}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raygrid", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    plan = sub.add_parser("plan", help=cmd_plan.__doc__, description=cmd_plan.__doc__)
    plan.add_argument("grid", help="grid YAML file")
    _add_overrides(plan)
    plan.add_argument("-v", "--verbose", action="store_true", help="also print each cell's resolved config")
    plan.add_argument("--no-cost", action="store_true", help="only list the cells (no tokens/FLOPs/GPU-hours)")
    plan.add_argument("--out", help="output folder whose MLflow store `select:` reads; default runs/")
    plan.add_argument("--cache-dir", help="tokenized-data cache for exact token counts; default $RAYGRID_CACHE "
                      "or ~/.cache/raygrid")
    plan.set_defaults(func=cmd_plan)

    run = sub.add_parser("run", help=cmd_run.__doc__, description=cmd_run.__doc__)
    run.add_argument("grid", help="grid YAML file")
    _add_overrides(run)
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
    report.add_argument("--out", help="the grid's output folder (with a grid file); default runs/")
    report.add_argument("--format", choices=("md", "csv", "tex"), default="md",
                        help="table format: Markdown, CSV, LaTeX (booktabs)")
    report.add_argument("--save", help="also write into this folder: <grid>.md, <grid>.tex, one CSV per table, "
                                       "PNG figures (logged to the grid's parent run too)")
    report.add_argument("--compare", metavar="REFERENCE", help="published figures (CSV: dataset, model, variant, "
                        "metric, value, source; e.g. grids/reference/study_published.csv) set beside ours, with "
                        "the difference")
    report.set_defaults(func=cmd_report)

    _add_data(sub)
    _add_bench(sub)
    return parser


def _add_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="override a key of the grid file, checked like the file: dotted into base "
                             "(optim.lr=1e-4, model.pooling=mean), or resources.KEY=, axes.KEY=[...], "
                             "stages.NAME.KEY=, name=; values are YAML (1e-4, [0,1], {kind: favor})")


def cmd_data_prepare(args) -> int:
    """Tokenize everything a grid needs into the cache ahead of time (trials then only read)."""
    from raygrid.data.cache import cache_root
    from raygrid.data.prepare import prepare_cells

    grid = load_grid(args.grid)
    tokenize = None
    if args.ray:
        from raygrid.orchestration.tokenize_pool import ray_tokenize
        tokenize = ray_tokenize(actors=args.actors)
    entries = prepare_cells(grid.cells, cache_root(args.cache_dir), tokenize=tokenize)
    for folder in sorted({str(e.folder) for e in entries.values()}):
        print(folder)
    return 0


def cmd_data_stats(args) -> int:
    """Documents per split, label balance, length statistics and the share truncated at --max-len."""
    from pydantic import ValidationError

    from raygrid.spec.config import DataConfig
    from raygrid.spec.grid import describe
    from raygrid.data.sources import load_raw
    from raygrid.data.splits import apply_split_policy
    from raygrid.data.stats import dataset_stats, format_stats

    try:
        text_rule = args.text_rule or ("study" if args.split == "study" else "source")  # study: its documents
        cfg = DataConfig(dataset=args.name, path=args.path, subset=args.subset, split=args.split, text_rule=text_rule)
    except ValidationError as err:  # one line naming the setting, as for grid files
        raise _grid_error(f"data stats: {describe(err)}") from None
    raw = load_raw(cfg)
    tokenizer = None
    if args.tokenizer:
        from raygrid.data.cache import load_tokenizer
        tokenizer = load_tokenizer(args.tokenizer)
    stats = dataset_stats(apply_split_policy(raw, cfg), tokenizer=tokenizer, max_len=args.max_len,
                          label_names=raw.label_names)
    print(format_stats(stats, title=f"{args.name} ({args.split} split)"))
    return 0


def _add_data(sub) -> None:
    data = sub.add_parser("data", help="prepare the tokenized cache, dataset statistics")
    kinds = data.add_subparsers(dest="data", required=True)
    prep = kinds.add_parser("prepare", help=cmd_data_prepare.__doc__, description=cmd_data_prepare.__doc__)
    prep.add_argument("grid", help="grid YAML file")
    prep.add_argument("--cache-dir", help="default $RAYGRID_CACHE or ~/.cache/raygrid")
    prep.add_argument("--ray", action="store_true", help="tokenize on a Ray Data actor pool ($RAY_ADDRESS or local)")
    prep.add_argument("--actors", type=int, default=2, help="tokenizer actors with --ray (default 2)")
    prep.set_defaults(func=cmd_data_prepare)
    stats = kinds.add_parser("stats", help=cmd_data_stats.__doc__, description=cmd_data_stats.__doc__)
    stats.add_argument("name", help="dataset adapter: imdb, hyperpartisan, arxiv, local")
    stats.add_argument("--path", help="local folder instead of the HF hub")
    stats.add_argument("--subset", help="dataset variant (e.g. byarticle_semeval, no_ref)")
    stats.add_argument("--split", choices=("standard", "study", "resplit"), default="standard",
                       help="standard: published splits; study: the study's exact rule; resplit: merged 80/10/10")
    stats.add_argument("--text-rule", choices=("source", "study"),
                       help="text preparation (default: study with --split study, else source)")
    stats.add_argument("--tokenizer", help="tokenizer (folder, pkg://, hub id) for token lengths")
    stats.add_argument("--max-len", type=int, help="report the share of documents truncated at this length")
    stats.set_defaults(func=cmd_data_stats)


# `raygrid bench KIND`: each kind's options live in its module (raygrid.bench.*), which imports torch;
# the module is imported only when that kind is chosen, not to build the parser.
BENCHES = {
    "attention": ("raygrid.bench.attention", "attention kernels: time, memory and error vs sequence length"),
    "padding": ("raygrid.bench.padding", "padded / real tokens of training batches, random vs length-grouped"),
    "loop": ("raygrid.bench.loop", "one cell's training loop bare vs through raygrid: tokens/s, overhead"),
    "data": ("raygrid.bench.data_prepare", "data path: peak memory of `data prepare` at 1x and 10x, tokenizer scaling"),
}


class _LazySubcommands(argparse._SubParsersAction):
    """Subcommands whose options are added (by importing their module) only once one is chosen."""

    def __call__(self, parser, namespace, values, option_string=None):
        chosen = self._name_parser_map.get(values[0])
        if chosen is not None and getattr(chosen, "populate", None):
            chosen.populate(chosen)
            chosen.populate = None
        return super().__call__(parser, namespace, values, option_string)


def _populate_bench(module_name: str):
    def populate(parser: argparse.ArgumentParser) -> None:
        import importlib

        module = importlib.import_module(module_name)
        module.add_arguments(parser)
        parser.set_defaults(func=module.main)
    return populate


def _add_bench(sub) -> None:
    bench = sub.add_parser("bench", help="benchmarks that write figures into BENCHMARKS.md")
    bench.register("action", "lazy_parsers", _LazySubcommands)
    kinds = bench.add_subparsers(dest="bench", required=True, action="lazy_parsers")
    for name, (module_name, help_text) in BENCHES.items():
        kind = kinds.add_parser(name, help=help_text, description=help_text)
        kind.populate = _populate_bench(module_name)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # `raygrid run grid.yaml --out x lr=1` leaves the overrides after an option unparsed: take them too.
    if extra and hasattr(args, "overrides") and all("=" in item and not item.startswith("-") for item in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        code = args.func(args) or 0
    except (ValueError, FileNotFoundError, LookupError) as err:  # GridError is a ValueError
        print(f"raygrid: error: {err}", file=sys.stderr)
        return 2
    if argv is None and getattr(args, "exit_log", None):  # the `raygrid` program (not a caller's main([...]))
        from raygrid.orchestration.console import divert_the_rest

        divert_the_rest(args.exit_log)
    return code


if __name__ == "__main__":
    sys.exit(main())
