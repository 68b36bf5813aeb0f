"""`raygrid bench attention --kernels`: each variant's kernels side by side at a fixed token budget per batch.

Rows: every registered variant at its study setting (the record's `study` row), variants with a choice
of kernel (LSH's `implementation`) once per kernel (fused, reference), then the public peers
(performer_pytorch, reformer_pytorch, transformers' Reformer) where installed. Per length N, a batch
holds tokens // N sequences, as in the issue's H200 figures (32k tokens per batch), so linear kernels
cost the same in every column. Cells: forward+backward ms / peak MiB above the inputs
(raygrid.bench.attention.measure) / error, where error = ‖out - exact‖ / ‖exact‖ on one batch with
`exact` = the same variant on its reference kernel for a fused row (same hashes: the fused kernel's
own numerical error) and exact float32 softmax otherwise (the approximation); peers that project or
hash their inputs their own way get no error. A deadline stops the table early: later cells say so.
"""
from __future__ import annotations

import time

import torch
from pydantic import ValidationError

from raygrid.attention import registry
from raygrid.attention.softmax import softmax_attention
from raygrid.bench.attention import PUBLIC_PERFORMER, random_qkv, make_kernel, measure, public_kernels

START, END = "<!-- bench:kernels:start -->", "<!-- bench:kernels:end -->"
KERNELS = ("fused", "reference")  # values of an `implementation` field that name a kernel of the same maths


def study_rows() -> list[tuple[str, object]]:
    """(label, params) of every record at its study setting, once per kernel where it has a choice."""
    rows = []
    for record in registry.records():
        label, params = record.study_params()
        twins = kernel_twins(params)
        rows += [(f"{label} [{kernel}]", twin) for kernel, twin in twins] if twins else [(label, params)]
    return rows


def kernel_twins(params) -> list[tuple[str, object]]:
    """[(kernel, params forced onto it)] for params whose `implementation` accepts every name in KERNELS."""
    if "implementation" not in type(params).model_fields:
        return []
    try:
        return [(kernel, type(params).model_validate({**params.model_dump(), "implementation": kernel}))
                for kernel in KERNELS]
    except ValidationError:  # e.g. softmax: sdpa | eager, one kernel under two HF names
        return []


def for_length(params, length: int):
    """params with settings that follow max_len fixed at `length` (a bench batch is padded to its length)."""
    fix = registry.variant_of(params).for_max_len
    return fix(params, length) if fix is not None else params


def run_kernel_table(lengths, tokens: int = 32768, heads: int = 12, head_dim: int = 64, device: str = "cpu",
                     dtype: str = "float32", repeats: int = 3, include_public: bool = True,
                     deadline: float | None = None, rows=None) -> list[dict]:
    """One dict per (row, length): time_ms, peak_mib, rel_error (or error / skipped)."""
    rows = list(rows if rows is not None else study_rows())
    results = []
    for length in lengths:
        batch = max(1, tokens // length)
        q, k, v = random_qkv(batch, heads, length, head_dim, device, getattr(torch, dtype))
        kernels = [(label, make_kernel(for_length(p, length), head_dim), p) for label, p in rows]
        if include_public:
            kernels += [(label, fn, None) for label, fn in public_kernels(head_dim, heads, length)]
        exact = _exact(q, k, v)
        for label, fn, params in kernels:
            cell = {"variant": label, "length": length, "batch": batch}
            if deadline is not None and time.monotonic() > deadline:
                results.append({**cell, "skipped": "time budget"})
                continue
            try:
                cell["time_ms"], cell["peak_mib"] = measure(fn, q, k, v, repeats)
                cell["rel_error"] = _error(label, params, q, k, v, exact, head_dim, length)
            except Exception as error:  # noqa: BLE001 - e.g. out of memory: recorded in the table, go on
                cell["error"] = (str(error).splitlines() or [type(error).__name__])[0][:80]
                if device.startswith("cuda"):
                    torch.cuda.empty_cache()
            results.append(cell)
    return results


def _exact(q, k, v) -> torch.Tensor:
    """Float32 softmax attention of the batch (the approximations' target)."""
    with torch.no_grad():
        return softmax_attention(q.float(), k.float(), v.float())


def _error(label, params, q, k, v, exact, head_dim: int, length: int) -> float | None:
    """‖out - target‖ / ‖target‖ (see the module docstring); None where no target applies."""
    if params is None and label != PUBLIC_PERFORMER:
        return None
    if params is None:
        fn = dict(public_kernels(head_dim, q.shape[1], length))[label]
    else:
        fn = make_kernel(for_length(params, length), head_dim)  # fresh state: the twin below hashes alike
    target = exact
    if params is not None and getattr(params, "implementation", None) == "fused":
        reference = for_length(params.model_copy(update={"implementation": "reference"}), length)
        with torch.no_grad():
            target = make_kernel(reference, head_dim)(q, k, v, None).float()
    with torch.no_grad():
        out = fn(q, k, v, None).float()
    return float((out - target).norm() / target.norm())


def render_markdown(results: list[dict], device: str, dtype: str, tokens: int, heads: int, head_dim: int,
                    note: str = "") -> str:
    """The table (rows × lengths) with its environment line; `note` goes under the title."""
    lengths = list(dict.fromkeys(r["length"] for r in results))
    name = torch.cuda.get_device_name() if device.startswith("cuda") else device
    lines = ["## Attention kernels side by side (`raygrid bench attention --kernels`)", "",
             f"Device: {name}; torch {torch.__version__}; dtype {dtype}; {heads} heads × {head_dim}; "
             f"{tokens:,} tokens per batch (batch = tokens / N). Cells: forward+backward ms / peak MiB / error "
             "(fused rows: vs the reference kernel, same hashes; others: vs exact float32 softmax; – : none).", ""]
    lines += [note, ""] if note else []
    lines += ["| kernel | " + " | ".join(f"N={n}" for n in lengths) + " |", "|---" * (len(lengths) + 1) + "|"]
    for label in dict.fromkeys(r["variant"] for r in results):
        cells = {r["length"]: r for r in results if r["variant"] == label}
        lines.append(f"| {label} | " + " | ".join(_cell(cells.get(n)) for n in lengths) + " |")
    return "\n".join(lines) + "\n"


def _cell(row: dict | None) -> str:
    if row is None:
        return "–"
    if "skipped" in row or "error" in row:
        return f"not run ({row['skipped']})" if "skipped" in row else f"failed ({row['error']})"
    error = "–" if row["rel_error"] is None else f"{row['rel_error']:.1e}"
    return f"{row['time_ms']:.1f} / {row['peak_mib']:.0f} / {error}"


def add_arguments(parser) -> None:
    """Options of the kernel table (`raygrid bench attention --kernels ...`)."""
    parser.add_argument("--kernels", action="store_true",
                        help="the kernel table instead: study settings, fused vs reference vs SDPA vs peers")
    parser.add_argument("--tokens", type=int, default=32768, help="--kernels: tokens per batch (batch = tokens / N)")


def main(args) -> int:
    """`--kernels`: run the table at --lengths on --device in --dtype, write it between its markers in --out."""
    from raygrid.bench.attention import write_section

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    lengths = args.lengths or ((512, 1024, 2048, 4096, 8192, 16384) if device.startswith("cuda")
                               else (512, 1024, 2048, 4096))
    heads, head_dim = (int(x) for x in args.shapes[0].lower().split("x"))
    results = run_kernel_table(lengths, args.tokens, heads, head_dim, device, args.dtype, args.repeats,
                               not args.no_public)
    body = render_markdown(results, device, args.dtype, args.tokens, heads, head_dim)
    write_section(args.out, body, START, END)
    print(body)
    return 0
