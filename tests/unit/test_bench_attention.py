"""Smoke run of `raygrid bench attention`: rows come back, the Markdown section is written and replaced."""
from __future__ import annotations

import argparse

import torch

from raygrid.bench import attention as bench_attention
from raygrid.bench import attention_cli
from raygrid.bench.attention import END, START, default_variants, run_attention_bench


def test_bench_rows_and_section_replaced(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\n## Training\nkeep me\n")
    kwargs = dict(lengths=[64], shapes=[(2, 16)], device="cpu", dtype="float32", out_md_path=out, repeats=1,
                  include_public=False)
    rows = run_attention_bench(**kwargs, error_length=64, scales=(0.5,), progress=False)
    speed = [r for r in rows if r["kind"] == "speed"]
    assert {r["variant"] for r in speed} == {label for label, _ in default_variants()}
    assert all(r["time_ms"] > 0 and r["peak_mib"] >= 0 for r in speed)
    errors = {r["variant"]: r["rel_error"] for r in rows if r["kind"] == "error"}
    assert "mean of v (baseline)" in errors and len(errors) == len(default_variants())  # softmax has no error row
    assert errors["lsh R=2 L=64"] < 1e-5 < errors["mean of v (baseline)"]  # one window covers N=64: exact
    first = out.read_text()
    assert first.count(START) == 1 and first.count(END) == 1 and "keep me" in first
    assert "| softmax (SDPA) |" in first and "N=64" in first

    run_attention_bench(**kwargs, error_length=64, scales=(0.5,), progress=False, variants=default_variants()[:2])
    second = out.read_text()
    assert second.count(START) == 1 and "keep me" in second and "| lsh R=2 L=64 |" not in second


def test_cpu_peak_probe_counts_live_storages_only():
    with bench_attention._PeakTensorBytes() as probe:
        a = torch.ones(2**18)  # 1 MiB of float32
        b = a * 2  # 2 MiB live
        del a, b
        c = torch.ones(2**18)  # freed storages dropped out: still a 2 MiB peak
        d = c[:10]  # a view shares its storage: counted once
    assert probe.peak == 2 * 2**20 and d.numel() == 10


def test_cli_arguments_and_new_file(tmp_path):
    parser = argparse.ArgumentParser()
    attention_cli.add_arguments(parser)
    out = tmp_path / "new.md"
    args = parser.parse_args(["--lengths", "32", "--shapes", "1x8", "--repeats", "1", "--no-public",
                              "--error-length", "32", "--out", str(out), "--device", "cpu"])
    assert attention_cli.main(args) == 0
    assert out.read_text().count(START) == 1


def test_cli_kinds_keeps_only_those_variants(tmp_path):
    parser = argparse.ArgumentParser()
    attention_cli.add_arguments(parser)
    out = tmp_path / "kinds.md"
    args = parser.parse_args(["--lengths", "32", "--shapes", "1x8", "--repeats", "1", "--no-public", "--kinds",
                              "softmax", "linear", "--error-length", "32", "--out", str(out), "--device", "cpu"])
    assert attention_cli.main(args) == 0
    text = out.read_text()
    assert "| softmax (SDPA) |" in text and "| linear elu+1 |" in text and "favor" not in text.split("###")[1]


def test_kernel_table_fused_vs_reference_on_cpu_and_the_deadline(tmp_path):
    from raygrid.bench import kernel_table

    labels = [label for label, _ in kernel_table.study_rows()]
    assert {"lsh study R=2 L=64 [fused]", "lsh study R=2 L=64 [reference]", "softmax (SDPA)"} <= set(labels)
    results = kernel_table.run_kernel_table([64, 128], tokens=256, heads=2, head_dim=16, repeats=1,
                                            include_public=False)
    cells = {(r["variant"], r["length"]): r for r in results}
    assert {r["batch"] for r in results} == {4, 2}  # tokens / N sequences per batch
    assert all(r["time_ms"] > 0 and r["rel_error"] is not None for r in results)
    assert cells[("lsh study R=2 L=64 [fused]", 128)]["rel_error"] < 1e-5  # same hashes as the reference
    assert cells[("softmax (SDPA)", 64)]["rel_error"] < 1e-5 < cells[("favor φ* M=256", 64)]["rel_error"]
    late = kernel_table.run_kernel_table([64], tokens=64, heads=2, head_dim=16, repeats=1, include_public=False,
                                         deadline=0.0)
    assert all(r["skipped"] == "time budget" for r in late)
    text = kernel_table.render_markdown(results + late, "cpu", "float32", 256, 2, 16, note="a note")
    assert "| lsh study R=2 L=64 [fused] |" in text and "a note" in text and "e-" in text

    parser = argparse.ArgumentParser()
    attention_cli.add_arguments(parser)
    out = tmp_path / "kernels.md"
    out.write_text("# Benchmarks\n")
    args = parser.parse_args(["--kernels", "--lengths", "32", "--shapes", "1x8", "--tokens", "64", "--repeats", "1",
                              "--no-public", "--out", str(out), "--device", "cpu"])
    assert attention_cli.main(args) == 0
    assert out.read_text().count(kernel_table.START) == 1 and "N=32" in out.read_text()
