"""What `raygrid plan` prints beside the cell list: each stage's data, training settings and attention rules.

So a reader checks a grid against the study's design (research_design.md) without reading every
cell's resolved config (`plan -v` prints those): which split policy and max_len each dataset gets;
per dataset the epochs, learning rate, batch size and gradient accumulation, and the seeds; the
schedule, precision and classification head of the stage's cells; and which semantics each
attention variant with a plan note runs (LSH: shared or separate Q/K, window, self rule, round
combination, mask; the note comes from the variant's record).
"""
from __future__ import annotations

from raygrid.attention.registry import variant_of
from raygrid.spec.grid import Grid


def dataset_label(cell) -> str:
    """`hyperpartisan/bypublisher`: the dataset and its subset, if any."""
    data = cell.config.data
    return data.dataset + (f"/{data.subset}" if data.subset else "")


def data_summary(cell) -> str:
    """`hyperpartisan/bypublisher split=study text=study max_len=4096` (TF-IDF: no max_len); a corpus shows
    its rule and layout instead of a split: `wikipedia corpus=study no-validation layout=document short=450000x128 unshuffled`."""
    data = cell.config.data
    parts = [dataset_label(cell)]
    if data.dataset in ("wikipedia", "wikitext"):
        parts += [f"corpus={data.corpus_rule}"] * (data.corpus_rule != "none")
        parts += ["no-validation"] * (data.val_fraction == 0)
    else:
        parts.append(f"split={data.split}")
    parts += [f"text={data.text_rule}"] * (data.text_rule != "source")
    if cell.config.kind == "mlm":
        parts.append(f"layout={data.mlm_layout}")
        parts += [f"short={data.short_rows}x{data.short_len}"] * bool(data.short_rows)
    if cell.config.kind != "tfidf":  # TF-IDF reads whole texts (and has no batch order)
        parts += ["unshuffled"] * (not data.shuffle)  # data.shuffle: false, training batches in cache order
        parts.append(f"max_len={data.max_len}")
    return " ".join(parts)


def _joined(values: list) -> str:
    """Distinct values in first-seen order: `420,42,123`."""
    return ",".join(dict.fromkeys(str(v) for v in values))


def training_lines(cells, label: str) -> list[str]:
    """Per dataset: epochs, lr, batch and accumulation, then seeds; one line per schedule/precision/head set.

    Several values of a setting (an axis) print as `1e-4,3e-4`. TF-IDF cells train no network: left out.
    """
    trained = [cell for cell in cells if cell.config.kind != "tfidf"]
    if not trained:
        return []
    per_dataset: dict[str, dict[str, list]] = {}
    rules: dict[str, int] = {}
    for cell in trained:
        optim, model = cell.config.optim, cell.config.model
        found = per_dataset.setdefault(dataset_label(cell), {"epochs": [], "lr": [], "batch": [], "accum": [],
                                                             "seeds": []})
        for key, value in (("epochs", optim.epochs), ("lr", f"{optim.lr:g}"), ("batch", optim.batch_size),
                           ("accum", optim.grad_accum), ("seeds", cell.config.seed)):
            found[key].append(value)
        rule = (f"{optim.schedule} warmup={optim.warmup_ratio:g} min_lr_ratio={optim.min_lr_ratio:g} "
                f"weight_decay={optim.weight_decay:g} clip={optim.clip_norm:g} precision={optim.precision}")
        if cell.config.kind == "finetune":  # MLM cells have no classification head
            rule += f" head={model.head}"
        rule += _dropout(model.config_overrides)
        rules[rule] = rules.get(rule, 0) + 1
    optim_parts = [f"{name} epochs={_joined(v['epochs'])} lr={_joined(v['lr'])} batch={_joined(v['batch'])} "
                   f"accum={_joined(v['accum'])}" for name, v in per_dataset.items()]
    seeds = [f"{name} {_joined(v['seeds'])}" for name, v in per_dataset.items()]
    return [f"optim    {label}{' | '.join(optim_parts)}", f"seeds    {label}{' | '.join(seeds)}",
            *(f"train    {label}{rule} ({count} cells)" for rule, count in rules.items())]


def _dropout(overrides: dict) -> str:
    """` dropout=attention_probs:0,hidden:0.1` from HF config overrides (BERT: *_dropout_prob); "" if none."""
    rates = [f"{key.removesuffix('_dropout_prob').removesuffix('_dropout')}:{value:g}"
             for key, value in overrides.items() if "dropout" in key and isinstance(value, (int, float))]
    return f" dropout={','.join(rates)}" if rates else ""


def settings_lines(grid: Grid) -> list[str]:
    """Per stage: its data settings, training settings and one line per distinct attention rule set (with the cell count)."""
    lines = []
    for stage in grid.stage_order or [None]:
        cells = grid.stage_cells(stage)
        label = f"{stage}: " if stage else ""
        datasets = dict.fromkeys(data_summary(cell) for cell in cells)
        lines.append(f"data     {label}{' | '.join(datasets)}")
        lines += training_lines(cells, label)
        rules: dict[str, int] = {}
        for cell in cells:
            record = variant_of(cell.config.attention)
            if record.plan_note is not None:
                rule = f"{record.kind:<8} {label}{record.plan_note(cell.config.attention)}"
                rules[rule] = rules.get(rule, 0) + 1
        lines += [f"{rule} ({count} cells)" for rule, count in rules.items()]
    return lines
