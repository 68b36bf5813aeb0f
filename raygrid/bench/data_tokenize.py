"""`raygrid bench data tokenize`: tokens/s of the cache builder in process and on N Ray Data tokenizer actors.

The same Wikipedia-like corpus (document layout, max_len 512; `--rule study` adds the keyword rule,
which runs in the reading task) is prepared into a fresh cache each
time: in this process (the tokenizer's own Rust threads use every core), then on a Ray Data pool of
N actors for each N (one CPU each, one tokenizer thread each), on the local Ray started once. Times
include each pool's start (tokenizer loads) and the writing; they are wall-clock, so run it alone.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from raygrid.bench.data_corpora import wikipedia_like
from raygrid.bench.data_memory import MINILM, SHARED


def add_arguments(parser) -> None:
    parser.add_argument("--articles", type=int, default=5_000, help="Wikipedia-like articles (default 5,000)")
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2], help="pool sizes (default: 1 2)")
    parser.add_argument("--shared", default=str(SHARED), help="folder of the shared Wikipedia sample")
    parser.add_argument("--tokenizer", default=MINILM, help="tokenizer location")
    parser.add_argument("--rule", choices=("none", "study"), default="none",
                        help="corpus rule (default none: the keyword scan would share the CPUs with the tokenizers)")
    parser.add_argument("--work", help="folder for the corpus and caches (default: a temporary folder, removed)")


def main(args) -> int:
    from raygrid.data.mlm_data import prepare_mlm
    from raygrid.orchestration.cluster import init_ray
    from raygrid.orchestration.tokenize_pool import ray_tokenize
    from raygrid.spec.config import DataConfig

    with tempfile.TemporaryDirectory(prefix="raygrid-bench-tokenize-", dir=args.work) as work:
        work = Path(work)
        corpus = wikipedia_like(sorted(Path(args.shared).glob("enwiki_sample_*.parquet")), args.articles, work / "wiki")
        cfg = DataConfig(dataset="wikipedia", path=str(corpus), corpus_rule=args.rule, mlm_layout="document",
                         val_fraction=0, max_len=512)
        runs = [("in process", None)]
        if args.actors:
            init_ray()
            runs += [(f"{n} actor{'s' * (n > 1)}", ray_tokenize(n)) for n in args.actors]
        results = []
        for index, (label, tokenize) in enumerate(runs):
            start = time.perf_counter()
            entry = prepare_mlm(cfg, args.tokenizer, work / f"cache-{index}", progress=False, tokenize=tokenize)
            results.append((label, entry.meta["splits"]["train"]["tokens"], time.perf_counter() - start))
    print(_table(results))
    return 0


def _table(results) -> str:
    base = next((tokens / wall for label, tokens, wall in results if label == "1 actor"), None)
    lines = ["| tokenization | tokens | wall | tokens/s | vs 1 actor |", "|---|---:|---:|---:|---:|"]
    for label, tokens, wall in results:
        speed = tokens / wall
        lines.append(f"| {label} | {tokens / 1e6:.1f} M | {wall:.1f} s | {speed:,.0f} | "
                     f"{f'{speed / base:.2f}x' if base else '–'} |")
    return "\n".join(lines)
