"""`raygrid data ...` and `raygrid bench ...`: the subcommands that prepare data and measure (argparse only).

Like raygrid.cli, nothing heavy is imported to build the parser: each command imports what it runs,
and each bench's options come from its own module, imported only when that bench is chosen.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def add_overrides(parser: argparse.ArgumentParser, note: str = "") -> None:
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="override a key of the grid file, checked like the file: dotted into base "
                             "(optim.lr=1e-4, model.pooling=mean), or resources.KEY=, axes.KEY=[...], "
                             "stages.NAME.KEY=, name=; values are YAML (1e-4, [0,1], {kind: favor})"
                             + (f"; {note}" if note else ""))


def cmd_data_prepare(args) -> int:
    """Tokenize everything a grid needs into the cache ahead of time (trials then only read)."""
    from raygrid.data.cache import cache_root
    from raygrid.data.prepare import prepare_cells
    from raygrid.spec.loader import load_grid

    grid = load_grid(args.grid, overrides=args.overrides)
    root = cache_root(args.cache_dir)
    if "://" not in root:  # one line naming the folder, not a traceback from deep in the writer
        from raygrid.orchestration.preflight import check_writable

        check_writable(Path(root), "--cache-dir")
    tokenize = None
    if args.ray:
        from raygrid.orchestration.tokenize_pool import ray_tokenize
        tokenize = ray_tokenize(actors=args.actors)
    entries = prepare_cells(grid.cells, root, tokenize=tokenize)
    for folder in sorted({str(e.folder) for e in entries.values()}):
        print(folder)
    return 0


def cmd_data_stats(args) -> int:
    """Documents per split, label balance, length statistics and the share truncated at --max-len."""
    from pydantic import ValidationError

    from raygrid.spec.config import DataConfig
    from raygrid.spec.grid import GridError, describe
    from raygrid.data.sources import load_raw
    from raygrid.data.splits import apply_split_policy
    from raygrid.data.stats import dataset_stats, format_stats

    try:
        text_rule = args.text_rule or ("study" if args.split == "study" else "source")  # study: its documents
        cfg = DataConfig(dataset=args.name, path=args.path, subset=args.subset, split=args.split, text_rule=text_rule)
    except ValidationError as err:  # one line naming the setting, as for grid files
        raise GridError(f"data stats: {describe(err)}") from None
    raw = load_raw(cfg)
    tokenizer = None
    if args.tokenizer:
        from raygrid.data.cache import load_tokenizer
        tokenizer = load_tokenizer(args.tokenizer)
    stats = dataset_stats(apply_split_policy(raw, cfg), tokenizer=tokenizer, max_len=args.max_len,
                          label_names=raw.label_names)
    print(format_stats(stats, title=f"{args.name} ({args.split} split)"))
    return 0


def add_data(sub) -> None:
    data = sub.add_parser("data", help="prepare the tokenized cache, dataset statistics")
    kinds = data.add_subparsers(dest="data", required=True)
    prep = kinds.add_parser("prepare", help=cmd_data_prepare.__doc__, description=cmd_data_prepare.__doc__)
    prep.add_argument("grid", help="grid YAML file")
    add_overrides(prep, "the data the overridden grid's cells need")
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
    "attention": ("raygrid.bench.attention_cli", "attention kernels: time, memory and error vs sequence length"),
    "padding": ("raygrid.bench.padding", "padded / real tokens of training batches, random vs length-grouped"),
    "loop": ("raygrid.bench.loop", "one cell's training loop bare vs through raygrid: tokens/s, overhead"),
    "data": ("raygrid.bench.data_prepare", "data path: peak memory of `data prepare` at 1x and 10x, tokenizer scaling"),
}
GRID_BENCHES = ("loop",)  # benches that read a grid file: they take key=value overrides too


class _LazySubcommands(argparse._SubParsersAction):
    """Subcommands whose options are added (by importing their module) only once one is chosen."""

    def __call__(self, parser, namespace, values, option_string=None):
        chosen = self._name_parser_map.get(values[0])
        if chosen is not None and getattr(chosen, "populate", None):
            chosen.populate(chosen)
            chosen.populate = None
        return super().__call__(parser, namespace, values, option_string)


def _populate_bench(module_name: str, reads_grid: bool):
    def populate(parser: argparse.ArgumentParser) -> None:
        import importlib

        module = importlib.import_module(module_name)
        module.add_arguments(parser)
        if reads_grid:
            add_overrides(parser)
        parser.set_defaults(func=module.main)
    return populate


def add_bench(sub) -> None:
    bench = sub.add_parser("bench", help="benchmarks that write figures into BENCHMARKS.md")
    bench.register("action", "lazy_parsers", _LazySubcommands)
    kinds = bench.add_subparsers(dest="bench", required=True, action="lazy_parsers")
    for name, (module_name, help_text) in BENCHES.items():
        kind = kinds.add_parser(name, help=help_text, description=help_text)
        kind.populate = _populate_bench(module_name, name in GRID_BENCHES)
