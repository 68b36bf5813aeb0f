"""`raygrid bench attention`: time, peak memory and approximation error of every attention variant.

Speed: forward + backward of the bare kernel on random (B, H, N, D) inputs, best of `repeats` runs after
one warm-up (the minimum is the least disturbed by other processes on a shared machine). Peak memory = bytes allocated above the inputs during that forward + backward:
  GPU: torch.cuda.max_memory_allocated() - memory_allocated() before the call;
  CPU: a TorchDispatchMode sums the byte sizes of all live tensor storages after every op (outputs are
  tracked with weak references, so freed intermediates drop out), i.e. the CPU analogue of
  max_memory_allocated, free of allocator caching and RSS noise (run separately from the timing).
Error: ‖approx - exact‖_F / ‖exact‖_F at several logit scales σ = std(q·k/√d) (q, k ~ N(0, σ) entries),
next to the same error of "predict the mean of v" (uniform attention), the trivial baseline.
The Markdown report replaces the section between the bench markers of BENCHMARKS.md, nothing else.
"""
from __future__ import annotations

import datetime
import os
import platform
import re
import time
from pathlib import Path

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from raygrid.attention import registry
from raygrid.attention.softmax import softmax_attention  # the exact oracle of the error rows

START, END = "<!-- bench:attention:start -->", "<!-- bench:attention:end -->"
DEFAULT_SCALES = (0.25, 0.5, 0.75, 1.0, 1.5)


def default_variants() -> list[tuple[str, object]]:
    """(label, params): every record's bench rows (e.g. SDPA, FAVOR+ feature maps × M, linear, LSH R × L)."""
    return [(label, record.params.model_validate(fields))
            for record in registry.records() for label, fields in record.bench]


def make_kernel(params, head_dim: int, seed: int = 0):
    """A closure fn(q, k, v, key_padding_mask) over the variant's explicit state (drawn from `seed`)."""
    return registry.variant_of(params).standalone_kernel(params, head_dim, seed)


def public_kernels(head_dim: int, heads: int, length: int) -> list[tuple[str, object]]:
    """Optional third-party implementations (fn(q, k, v, mask)); silently absent when not importable."""
    found = []
    for label, build in PUBLIC:
        try:
            found.append((label, build(head_dim, heads, length)))
        except Exception:  # noqa: BLE001 - absent or incompatible version: skip
            pass
    return found


def _performer(head_dim: int, heads: int, length: int):
    from performer_pytorch import FastAttention

    fast = FastAttention(dim_heads=head_dim, nb_features=256, causal=False)  # positive features, m = 256
    return lambda q, k, v, m: fast.to(q.device)(q, k, v)


def _lucidrains_lsh(head_dim: int, heads: int, length: int):
    from reformer_pytorch import LSHAttention

    lsh = LSHAttention(bucket_size=64, n_hashes=2, causal=False)

    def fn(q, k, v, m):
        b, h, n, d = q.shape
        return lsh(q.reshape(b * h, n, d), v.reshape(b * h, n, d))[0]  # (B·H, N, D); shared QK: q is qk

    return fn


def _hf_reformer(head_dim: int, heads: int, length: int):
    from transformers import ReformerConfig
    from transformers.models.reformer.modeling_reformer import LSHSelfAttention

    config = ReformerConfig(hidden_size=heads * head_dim, num_attention_heads=heads, attention_head_size=head_dim,
                            lsh_attn_chunk_length=64, num_hashes=2, num_buckets=max(2, length // 64),
                            lsh_num_chunks_before=1, lsh_num_chunks_after=0, is_decoder=False,
                            max_position_embeddings=length, lsh_attention_probs_dropout_prob=0.0)
    layer = LSHSelfAttention(config)

    def fn(q, k, v, m):
        b, h, n, d = q.shape
        hidden = q.transpose(1, 2).reshape(b, n, h * d)  # (B, N, H·D): the layer projects it itself
        return layer.to(device=q.device, dtype=q.dtype)(hidden).hidden_states

    return fn


PUBLIC_PERFORMER = "performer_pytorch FAVOR+ M=256"  # same inputs as ours, so it also gets error rows
PUBLIC = ((PUBLIC_PERFORMER, _performer), ("reformer_pytorch LSH R=2 L=64", _lucidrains_lsh),
          ("transformers Reformer LSH R=2 L=64 (+QKV proj)", _hf_reformer))


class _PeakTensorBytes(TorchDispatchMode):
    """Peak of the summed sizes of live tensor storages created under this mode (CPU memory probe)."""

    def __init__(self):
        super().__init__()
        self.live: dict[int, tuple[object, int]] = {}
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()
                known = self.live.get(storage._cdata)
                if known is None or known[0].expired():
                    self.live[storage._cdata] = (StorageWeakRef(storage), storage.nbytes())
        self.live = {key: entry for key, entry in self.live.items() if not entry[0].expired()}
        self.peak = max(self.peak, sum(size for _, size in self.live.values()))
        return out


def random_qkv(batch, heads, length, head_dim, device, dtype, sigma=1.0, seed=0):
    """Seeded q, k, v (batch, heads, length, head_dim); q·k/√d has standard deviation `sigma`."""
    gen = torch.Generator().manual_seed(seed)
    std = sigma**0.5  # std(q·k/√d) = std(q_i)·std(k_i) = σ
    q, k, v = (torch.randn(batch, heads, length, head_dim, generator=gen) for _ in range(3))
    return (q * std).to(device, dtype), (k * std).to(device, dtype), v.to(device, dtype)


def measure(fn, q, k, v, repeats: int) -> tuple[float, float]:
    """(best forward+backward milliseconds, peak MiB above the inputs) for fn(q, k, v, None)."""
    q, k, v = (t.detach().requires_grad_(True) for t in (q, k, v))
    cuda = q.device.type == "cuda"

    def step():
        fn(q, k, v, None).float().sum().backward()
        if cuda:
            torch.cuda.synchronize()

    step()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1e3)
    for t in (q, k, v):
        t.grad = None
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        with _PeakTensorBytes() as probe:
            step()
        peak = probe.peak
    return min(times), peak / 2**20


def error_rows(variants, heads, head_dim, length, device, scales, seed=0, public=False) -> list[dict]:
    """Relative error vs exact softmax at each logit scale, plus the mean-of-v baseline."""
    kernels = [(label, make_kernel(p, head_dim, seed)) for label, p in variants if not registry.variant_of(p).reference]
    if public:
        kernels += [(label, fn) for label, fn in public_kernels(head_dim, heads, length) if label == PUBLIC_PERFORMER]
    rows = []
    for sigma in scales:
        q, k, v = random_qkv(1, heads, length, head_dim, device, torch.float32, sigma, seed)
        exact = softmax_attention(q, k, v)
        norm = exact.norm()
        baseline = (v.mean(dim=2, keepdim=True).expand_as(exact) - exact).norm() / norm
        where = {"kind": "error", "sigma": sigma, "heads": heads, "head_dim": head_dim, "length": length}
        rows.append({**where, "variant": "mean of v (baseline)", "rel_error": float(baseline)})
        for label, fn in kernels:
            with torch.no_grad():
                approx = fn(q, k, v, None)
            rows.append({**where, "variant": label, "rel_error": float((approx - exact).norm() / norm)})
    return rows


def run_attention_bench(
    lengths=None, shapes=((8, 64), (12, 64)), device: str | None = None, dtype: str = "float32",
    out_md_path: str | Path | None = "BENCHMARKS.md", repeats: int = 3, include_public: bool = True, *,
    variants=None, batch_size: int = 1, error_length: int | None = None, scales=DEFAULT_SCALES, progress: bool = True,
) -> list[dict]:
    """Benchmark every variant over lengths × shapes; write the Markdown section; return all rows."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if lengths is None:
        lengths = (512, 1024, 2048, 4096, 8192, 16384) if device.startswith("cuda") else (512, 1024, 2048, 4096)
    torch_dtype = getattr(torch, dtype)
    variants = list(variants if variants is not None else default_variants())
    jobs = [(shape, n) for shape in shapes for n in lengths]
    bar = _progress(len(jobs), progress)
    rows: list[dict] = []
    for (heads, head_dim), length in jobs:
        q, k, v = random_qkv(batch_size, heads, length, head_dim, device, torch_dtype)
        kernels = [(label, make_kernel(p, head_dim)) for label, p in variants]
        if include_public:
            kernels += public_kernels(head_dim, heads, length)
        for label, fn in kernels:
            row = {"kind": "speed", "variant": label, "heads": heads, "head_dim": head_dim, "length": length}
            try:
                row["time_ms"], row["peak_mib"] = measure(fn, q, k, v, repeats)
            except Exception as error:  # noqa: BLE001 - e.g. OOM: record it in the table, go on
                row["error"] = str(error).splitlines()[0][:80] if str(error) else type(error).__name__
                if device.startswith("cuda"):
                    torch.cuda.empty_cache()
            rows.append(row)
        bar.update(1)
    bar.close()
    heads, head_dim = shapes[0]
    rows += error_rows(variants, heads, head_dim, error_length or min(lengths[-1], 1024), device, scales,
                       public=include_public)
    if out_md_path is not None:
        write_section(out_md_path, render_markdown(rows, device, dtype, batch_size, repeats))
    return rows


def render_markdown(rows: list[dict], device: str, dtype: str, batch_size: int, repeats: int) -> str:
    """The report section (without markers): environment, one speed table per head shape, error table."""
    import transformers

    name = torch.cuda.get_device_name() if device.startswith("cuda") else (platform.processor() or platform.machine())
    lines = [
        "## Attention kernels (`raygrid bench attention`)", "",
        f"Device: {device} ({name}); {os.cpu_count()} CPUs; torch {torch.__version__}; "
        f"transformers {transformers.__version__}; {datetime.date.today().isoformat()}; dtype {dtype}; "
        f"batch {batch_size}; best of {repeats} runs.", "",
        "Cells: forward+backward ms / peak MiB above the inputs (how memory is measured: docstring of "
        "`raygrid/bench/attention.py`). t ratio = time at the longest / shortest length (linear: equal to the "
        "length ratio; quadratic: its square). SDPA runs a fused kernel that never stores the N×N matrix, so its "
        "memory is linear too; its time is not.",
    ]
    speed = [r for r in rows if r["kind"] == "speed"]
    for shape in dict.fromkeys((r["heads"], r["head_dim"]) for r in speed):
        lines += _speed_table([r for r in speed if (r["heads"], r["head_dim"]) == shape])
    return "\n".join(lines + _error_table([r for r in rows if r["kind"] == "error"])) + "\n"


def _table(title: str, columns: list[str], body: list[str], note: str = "") -> list[str]:
    header = ["| variant | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    return ["", title, ""] + ([note, ""] if note else []) + header + body


def _speed_table(rows: list[dict]) -> list[str]:
    lengths = list(dict.fromkeys(r["length"] for r in rows))
    body = []
    for label in dict.fromkeys(r["variant"] for r in rows):
        cells = {r["length"]: r for r in rows if r["variant"] == label}
        first, last = cells.get(lengths[0], {}), cells.get(lengths[-1], {})
        ratio = f"{last['time_ms'] / first['time_ms']:.1f}" if "time_ms" in first and "time_ms" in last else "–"
        body.append(f"| {label} | " + " | ".join(_cell(cells.get(n)) for n in lengths) + f" | {ratio} |")
    title = f"### {rows[0]['heads']} heads × {rows[0]['head_dim']} head dim"
    return _table(title, [f"N={n}" for n in lengths] + ["t ratio"], body)


def _error_table(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    scales = list(dict.fromkeys(r["sigma"] for r in rows))
    body = []
    for label in dict.fromkeys(r["variant"] for r in rows):
        values = {r["sigma"]: r["rel_error"] for r in rows if r["variant"] == label}
        body.append(f"| {label} | " + " | ".join(f"{values[s]:.3f}" for s in scales) + " |")
    title = (f"### Relative error vs exact softmax, ‖approx − exact‖ / ‖exact‖ "
             f"({rows[0]['heads']} heads × {rows[0]['head_dim']}, N={rows[0]['length']})")
    note = ("Random q, k with std(q·k/√d) = σ; v ~ N(0, 1). `mean of v` = uniform attention, the trivial baseline. "
            "performer_pytorch adds eps = 1e-4 after subtracting max(ωᵀx) only, so at large norms its features "
            "shrink to eps and its output to the mean of v; raygrid subtracts the max of the whole log-feature and "
            "adds `stabilizer` = 1e-6, keeping the unbiased (high-variance) estimator. Linear attention (elu+1) "
            "does not estimate softmax (it is another similarity): its row says how far from softmax it lands.")
    return _table(title, [f"σ={s:g}" for s in scales], body, note)


def _cell(row: dict | None) -> str:
    if row is None or "error" in row:
        return "–" if row is None else f"failed ({row['error']})"
    return f"{row['time_ms']:.1f} / {row['peak_mib']:.0f}"


def write_section(path: str | Path, body: str, start: str = START, end: str = END) -> None:
    """Replace (or append) the text between the markers `start` and `end`; every other section is kept."""
    path = Path(path)
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    section = f"{start}\n{body}{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), flags=re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def _progress(total: int, enabled: bool):
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional: a do-nothing bar
        return type("Silent", (), {"update": lambda self, n: None, "close": lambda self: None})()
    return tqdm(total=total, desc="bench attention", disable=not enabled)
