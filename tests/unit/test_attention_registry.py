"""The registry of attention records: every consumer reads it, so a variant is its record + kernel file only.

Linear attention (raygrid/attention/variants/linear.py + raygrid/attention/linear.py) was added as those
two files and nothing else; this test proves it loads in a grid, is priced by `plan`, trains in the loop,
is listed by `bench attention`, and that no module outside raygrid/attention/ branches on a kind.
"""
from __future__ import annotations

import importlib
import math
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

import raygrid
from raygrid.attention import records, registry
from raygrid.bench.attention import default_variants, run_attention_bench
from raygrid.cost import estimate as cost
from raygrid.data.batching import iterate_table
from raygrid.data.cache import prepare
from raygrid.model.encoder import build_classifier
from raygrid.spec.config import CellConfig
from raygrid.spec.loader import load_grid
from raygrid.spec.plan_notes import settings_lines
from raygrid.training.objectives import Classification
from raygrid.training.train_loop import Loaders, fit
from tests.conftest import tiny_grid_yaml

PACKAGE = Path(raygrid.__file__).parent
# Every record module dropped into variants/ (the registry must find each, and nothing else).
KINDS = {path.stem for path in (PACKAGE / "attention" / "variants").glob("*.py") if not path.stem.startswith("_")}


def test_the_registry_holds_every_variant_with_all_its_hooks():
    assert set(registry.kinds()) == KINDS and records()[0].kind == "softmax"  # the reference first
    for record in records():
        module = importlib.import_module(record.kernel_module)  # the record names it; loaded only now
        for name in ("kernel", "adapter", "attach", "redraw", "standalone", "export_state", "bench_setup"):
            assert getattr(record, name) is None or callable(getattr(module, getattr(record, name))), name
        assert callable(record.hook("kernel")) and callable(record.hook("adapter"))
        assert record.params().kind == record.kind and record.bench, record.kind
        assert record.flops(record.params(), 1024, 64, 4) > 0
        assert registry.variant_of({"kind": record.kind}) is record
    assert registry.get("favor").hook("redraw") and registry.get("lsh").counts_forwards
    assert registry.get("favor").state_buffers == ("favor_projection",)
    with pytest.raises(KeyError, match=re.escape(f"known: {sorted(KINDS)}")):
        registry.get("performer")


def test_a_record_whose_kind_disagrees_with_its_module_is_refused():
    from raygrid.attention.variants.linear import VARIANT

    with pytest.raises(ValueError, match="must equal the module name"):
        registry._check(VARIANT, "elu")


def test_the_config_union_is_built_from_the_records():
    cfg = {"data": {"dataset": "imdb"}, "model": {"checkpoint": "x"}}
    assert CellConfig.model_validate(cfg).attention.kind == "softmax"
    for kind in KINDS:
        assert CellConfig.model_validate({**cfg, "attention": {"kind": kind}}).attention.kind == kind


def _linear_grid(tmp_path, checkpoint):
    path = tmp_path / "g.yaml"
    path.write_text(tiny_grid_yaml(checkpoint, axes="  attention: [{kind: softmax}, {kind: linear}]\n"))
    return load_grid(path)


def test_a_linear_cell_loads_is_priced_and_reports_its_kind_errors(tmp_path, tiny_checkpoint):
    grid = _linear_grid(tmp_path, tiny_checkpoint)
    softmax_cell, linear_cell = grid.cells
    assert linear_cell.name == "attention=linear" and linear_cell.config.attention.kind == "linear"
    lines = cost.plan_lines(grid, cache_dir=tmp_path / "cache")
    row = next(line for line in lines if "attention=linear" in line)
    assert "?" not in row and "total: 2 model cells" in lines[-1]
    priced = [cost.cell_cost(c, grid.spec.resources, tmp_path / "cache") for c in grid.cells]
    assert all(p.unknown is None and p.flops > 0 for p in priced) and priced[0].flops != priced[1].flops
    shape, n = cost.model_shape(linear_cell), 40.0
    d = shape.hidden / shape.heads
    gap = cost.forward_flops(shape, softmax_cell.config.attention, n) - \
        cost.forward_flops(shape, linear_cell.config.attention, n)
    assert gap == pytest.approx(shape.layers * (4 * shape.hidden * n - 4 * shape.hidden * (d + 1)))
    # linear has no plan note: only the data and training lines, no attention rule line
    assert {line.split()[0] for line in settings_lines(grid)} == {"data", "optim", "seeds", "train"}
    bad = tmp_path / "bad.yaml"
    bad.write_text(tiny_grid_yaml(tiny_checkpoint, axes="  attention: [{kind: linear, eps: -1}]\n"))
    with pytest.raises(Exception, match=r"attention\.eps: "):
        load_grid(bad)


def test_a_linear_cell_trains_through_the_loop_with_the_linear_kernel(tmp_path, tiny_checkpoint, monkeypatch):
    cfg = _linear_grid(tmp_path, tiny_checkpoint).cells[1].config
    record = registry.get("linear")
    module = importlib.import_module(record.kernel_module)
    kernel, calls = getattr(module, record.kernel), []
    monkeypatch.setattr(module, record.kernel, lambda *a, **kw: calls.append(1) or kernel(*a, **kw))
    data = prepare(cfg.data, cfg.model.checkpoint, tmp_path / "cache", progress=False)
    tables = {s: pq.read_table(data.split_path(s)) for s in ("train", "validation", "test")}
    pad = data.meta["pad_token_id"]
    loaders = Loaders(train=lambda e: iterate_table(tables["train"], 8, pad, shuffle_seed=e),
                      validation=lambda: iterate_table(tables["validation"], 16, pad),
                      test=lambda: iterate_table(tables["test"], 16, pad),
                      steps_per_epoch=math.ceil(tables["train"].num_rows / 8))
    model = build_classifier(cfg, data.num_labels)
    assert model.encoder.config._attn_implementation == "raygrid_linear"
    before = model.encoder.encoder.layer[0].attention.self.query.weight.detach().clone()
    states = []
    final = fit(cfg, model, loaders, Classification(data.num_labels), torch.device("cpu"),
                lambda metrics, state: states.append(state))
    assert calls and 0 <= final["test_f1_macro"] <= 1 and math.isfinite(final["test_loss"])
    assert not torch.equal(model.encoder.encoder.layer[0].attention.self.query.weight, before)  # it learned
    assert states[0]["attention_forwards"] is None  # nothing counted: linear has no per-forward state


def test_bench_attention_lists_and_measures_linear(tmp_path):
    linear = [(label, p) for label, p in default_variants() if p.kind == "linear"]
    assert [label for label, _ in linear] == ["linear elu+1"]
    rows = run_attention_bench(lengths=[32], shapes=[(2, 8)], device="cpu", out_md_path=tmp_path / "B.md",
                               repeats=1, include_public=False, variants=default_variants()[:1] + linear,
                               error_length=32, scales=(0.5,), progress=False)
    speed = {r["variant"]: r for r in rows if r["kind"] == "speed"}
    assert speed["linear elu+1"]["time_ms"] > 0
    errors = {r["variant"]: r["rel_error"] for r in rows if r["kind"] == "error"}
    assert 0 < errors["linear elu+1"] < math.inf  # measured against exact softmax; softmax has no row
    assert "| linear elu+1 |" in (tmp_path / "B.md").read_text()


# Outside raygrid/attention/ no code may branch on an attention kind: it reads the record instead
# (the report too: its reference is the record marked `reference`, its ablation figures the records').
_SKIPPED = ("attention",)


def _kind_branches(text: str, kinds: set[str], params_classes: set[str]) -> list[str]:
    literal = "|".join(sorted(kinds))
    compared = re.compile(rf"""(\bkind\b|isinstance).*?(==|!=|\bin\b).*?["']({literal})["']"""
                          rf"""|["']({literal})["'].*?(==|!=|\bin\b).*?\bkind\b""")
    params = re.compile(rf"\b({'|'.join(sorted(params_classes))})\b")
    tuples = re.compile(rf"""\(\s*["']({literal})["']\s*,\s*["']({literal})["']""")  # ("softmax", "favor", ...)
    return [line.strip() for line in text.splitlines() if compared.search(line) or params.search(line)
            or tuples.search(line)]


def test_the_kind_branch_finder_finds_branches():
    kinds, classes = KINDS, {"FavorParams"}
    for line in ('if cfg.attention.kind == "favor":', "if 'lsh' == params.kind:", 'isinstance(p, FavorParams)',
                 'return part in ("softmax", "favor", "lsh")', 'if attention.kind in ("lsh", "linear"):'):
        assert _kind_branches(line, kinds, classes) == [line], line
    assert _kind_branches('if cfg.kind == "mlm":\nschedule == "linear"', kinds, classes) == []


def test_no_attention_kind_branches_outside_the_attention_package():
    classes = {record.params.__name__ for record in records()}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).parts[0] in _SKIPPED:
            continue
        found += [f"{path.relative_to(PACKAGE.parent)}: {line}"
                  for line in _kind_branches(path.read_text(), set(registry.kinds()), classes)]
    assert not found, "\n".join(found)


def _variant_field_reads(text: str, fields: set[str]) -> list[str]:
    """Lines reading a variant's own setting off a cell's attention (`cfg.attention.qk`, getattr(..., "qk"))."""
    names = "|".join(sorted(fields))
    read = re.compile(rf"""\.attention\.({names})\b|getattr\([^,]*attention[^,]*,\s*["']({names})["']""")
    return [line.strip() for line in text.splitlines() if read.search(line)]


def test_the_field_read_finder_finds_reads():
    fields = {"qk", "nb_features"}
    for line in ('if getattr(self.attention, "qk", None) == "shared":', "m = cfg.attention.nb_features"):
        assert _variant_field_reads(line, fields) == [line], line
    assert _variant_field_reads("cfg.attention.kind; attention.implementation", fields) == []


def test_no_variant_setting_is_read_outside_the_attention_package():
    """A variant's rules (LSH's Q = K, chunk and bucket rules; FAVOR+'s redraws) live in its record, so config,
    stages, model and training ask the record (cell_check, length_check, for_max_len, bound.bind)."""
    fields = {name for record in records() for name in record.params.model_fields} - {"kind"}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).parts[0] in _SKIPPED:
            continue
        found += [f"{path.relative_to(PACKAGE.parent)}: {line}"
                  for line in _variant_field_reads(path.read_text(), fields)]
    assert not found, "\n".join(found)
