"""`raygrid bench attention --favor-memory`: FAVOR+'s chunked kernel against the dense formula it replaced.

The dense formula (`favor_attention_dense`, kept as the tests' oracle) materialises the (B, H, N, M)
feature tensors of queries and keys, and autograd keeps them, plus their exponent inputs, for backward:
memory grows with N x M. The chunked kernel (`favor_attention`, raygrid.attention.favor_chunked) builds
features `chunk_rows` tokens at a time and rebuilds them in backward. Per (N, M): forward+backward time,
peak memory above the inputs (raygrid.bench.attention.measure: CUDA's allocator peak, or on CPU the peak
of live tensor storages) and the largest difference between the two outputs (they compute the same sums
in another order, so float32 rounding only).
"""
from __future__ import annotations

import platform
import time

import torch

from raygrid.attention.favor import draw_projection, favor_attention, favor_attention_dense
from raygrid.attention import registry
from raygrid.bench.attention import random_qkv, measure, write_section

START, END = "<!-- bench:favor-memory:start -->", "<!-- bench:favor-memory:end -->"


def favor_pair(nb_features: int, head_dim: int, feature_map: str = "hyperbolic", seed: int = 0):
    """(dense, chunked) kernels fn(q, k, v, mask) sharing one projection."""
    # This bench is about one variant's two kernels; its params come through the registry like any cell's.
    params = registry.get("favor").params(feature_map=feature_map, nb_features=nb_features)
    projection = draw_projection(nb_features, head_dim, feature_map, generator=torch.Generator().manual_seed(seed))

    def dense(q, k, v, mask):
        return favor_attention_dense(q, k, v, mask, params=params, projection=projection)

    def chunked(q, k, v, mask):
        return favor_attention(q, k, v, mask, params=params, projection=projection)

    return dense, chunked


def run(lengths, features, heads: int = 12, head_dim: int = 64, device: str = "cpu", repeats: int = 2) -> list[dict]:
    """One row per (length, nb_features): ms and peak MiB of both kernels, and their largest output difference."""
    rows = []
    for length in lengths:
        q, k, v = random_qkv(1, heads, length, head_dim, device, torch.float32)
        for nb in features:
            dense, chunked = favor_pair(nb, head_dim)
            with torch.no_grad():
                diff = (dense(q, k, v, None) - chunked(q, k, v, None)).abs().max().item()
            (dense_ms, dense_mib), (chunk_ms, chunk_mib) = (measure(fn, q, k, v, repeats) for fn in (dense, chunked))
            rows.append({"length": length, "nb_features": nb, "dense_ms": dense_ms, "dense_mib": dense_mib,
                         "chunked_ms": chunk_ms, "chunked_mib": chunk_mib, "max_abs_diff": diff})
    return rows


def render(rows: list[dict], device: str, heads: int, head_dim: int) -> str:
    """The Markdown section (machine, versions, date, then the table)."""
    lines = [f"Device {device} ({platform.machine()}, {torch.get_num_threads()} torch threads), torch {torch.__version__}, "
             f"{time.strftime('%Y-%m-%d')}; batch 1, {heads} heads x {head_dim}, float32, φ* (hyperbolic), "
             "forward+backward.", "",
             "| N | M | dense ms | dense peak MiB | chunked ms | chunked peak MiB | memory | max abs diff |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['length']:,} | {r['nb_features']} | {r['dense_ms']:.0f} | {r['dense_mib']:.0f} | "
                     f"{r['chunked_ms']:.0f} | {r['chunked_mib']:.0f} | {r['chunked_mib'] / r['dense_mib']:.2f}x | "
                     f"{r['max_abs_diff']:.1e} |")
    return "\n".join(lines) + "\n"


def main(args) -> int:
    """`--favor-memory`: measure, print and write the section into args.out."""
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    heads, head_dim = (int(x) for x in args.shapes[-1].lower().split("x"))
    rows = run(args.lengths or [1024, 4096], args.favor_features, heads, head_dim, device, args.repeats)
    body = render(rows, torch.cuda.get_device_name(0) if device == "cuda" else "cpu", heads, head_dim)
    print(body)
    write_section(args.out, body, START, END)
    return 0
