"""`raygrid bench attention`: its options and entry point, over the kernel bench (raygrid.bench.attention)
and the kernel table (raygrid.bench.kernel_table, `--kernels`), which builds on it."""
from __future__ import annotations

from raygrid.attention import registry
from raygrid.bench import kernel_table
from raygrid.bench.attention import default_variants, run_attention_bench


def add_arguments(parser) -> None:
    """Options of `raygrid bench attention` (argparse)."""
    parser.add_argument("--lengths", type=int, nargs="+", help="default 512…16384 on GPU, 512…4096 on CPU")
    parser.add_argument("--shapes", nargs="+", default=["8x64", "12x64"], help="HEADSxHEAD_DIM")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--error-length", type=int, default=None, help="sequence length of the error table")
    parser.add_argument("--out", default="BENCHMARKS.md", help="Markdown file whose bench section is replaced")
    parser.add_argument("--no-public", action="store_true", help="skip performer_pytorch/reformer_pytorch/HF Reformer")
    parser.add_argument("--kinds", nargs="+", choices=registry.kinds(), default=None,
                        help="only these attention kinds' rows (default: every registered variant)")
    parser.add_argument("--favor-memory", action="store_true",
                        help="FAVOR+'s chunked kernel vs the dense formula: time, peak memory, output difference")
    parser.add_argument("--favor-features", type=int, nargs="+", default=[128, 256, 512],
                        help="--favor-memory: feature counts M")
    kernel_table.add_arguments(parser)


def main(args) -> int:
    """Run the bench from parsed `add_arguments` options; print the section written."""
    if getattr(args, "kernels", False):
        return kernel_table.main(args)
    if getattr(args, "favor_memory", False):
        from raygrid.bench import favor_memory

        return favor_memory.main(args)
    shapes = [tuple(int(x) for x in s.lower().split("x")) for s in args.shapes]
    kinds = getattr(args, "kinds", None)
    variants = [(label, p) for label, p in default_variants() if kinds is None or p.kind in kinds]
    rows = run_attention_bench(args.lengths, shapes, args.device, args.dtype, args.out, args.repeats,
                               not args.no_public, batch_size=args.batch_size, error_length=args.error_length,
                               variants=variants)
    print(f"{len(rows)} rows; section written to {args.out}")
    return 0
