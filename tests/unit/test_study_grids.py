"""The four study grids against the study's design (../shared/notes/research_design.md), cell by cell."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from raygrid.attention.variants.lsh import for_max_len
from raygrid.spec.loader import load_grid

GRIDS = Path(__file__).resolve().parents[2] / "grids"
DESIGN = Path(__file__).resolve().parents[3] / "shared" / "notes" / "research_design.md"
STUDY_GRIDS = ("study_pretrain.yaml", "study_finetune.yaml", "study_attention.yaml", "study_lsh_mask.yaml")
# research_design.md, "Datasets and splits": every task is merged and re-split 80/10/10 (`study`);
# Hyperpartisan is the by-publisher release (>= 7,000 characters). Wikipedia is a corpus (no split policy).
DATASETS = {"imdb": (None, "study", 512), "hyperpartisan": ("bypublisher", "study", 4096),
            "arxiv": (None, "study", 16384), "wikipedia": (None, "standard", 512)}
# research_design.md, "Attention grid": Reformer's rules; num_hashes {2, 4} x chunk_size {64, 128}, mask off;
# "LSH bucket count": max_len / chunk_size, fixed per dataset (the study pads to max_len).
STUDY_LSH = {"qk": "shared", "look_backward": 1, "look_forward": 1, "exclude_self": True, "round_combine": "mean",
             "num_buckets": "max_len"}


def cells():
    for name in STUDY_GRIDS:
        for cell in load_grid(GRIDS / name).cells:
            yield name, cell


@pytest.mark.parametrize("name", STUDY_GRIDS)
def test_every_cell_has_the_study_split_and_max_len(name):
    for cell in load_grid(GRIDS / name).cells:
        data = cell.config.data
        subset, split, max_len = DATASETS[data.dataset]
        assert (data.subset, data.split) == (subset, split), cell.name
        if cell.config.kind != "tfidf":  # TF-IDF reads whole texts
            assert data.max_len == max_len, cell.name


def test_every_lsh_cell_runs_the_study_rules():
    grids = {}
    for name, cell in cells():
        attention = cell.config.attention
        if attention.kind != "lsh":
            continue
        assert {key: getattr(attention, key) for key in STUDY_LSH} == STUDY_LSH, cell.name
        layers = for_max_len(attention, cell.config.data.max_len)  # what the model's layers run with
        assert layers.num_buckets == cell.config.data.max_len // attention.chunk_size, cell.name
        grids.setdefault(name, set()).add((attention.num_hashes, attention.chunk_size, attention.mask_within_chunks))
    variants = {(r, c, False) for r in (2, 4) for c in (64, 128)}
    assert grids == {"study_pretrain.yaml": variants, "study_attention.yaml": variants,
                     "study_lsh_mask.yaml": {(2, 64, True), (2, 64, False)}}


def test_experiment_2_selects_experiment_1_winners_per_task():
    stage = load_grid(GRIDS / "study_attention.yaml").spec.stages[0]
    assert stage.select.grid == "study_finetune.yaml" and stage.select.stage == "finetune"
    assert stage.select.by == "best_val_f1_macro" and stage.select.mode == "max"
    assert set(stage.select.keys) == {"model.pooling", "model.n_freeze", "model.p_drop"}


def test_the_design_table_agrees_with_this_test():
    if not DESIGN.is_file():
        pytest.skip(f"{DESIGN} not found (CI lays ../shared beside the clone)")
    rows = {}
    for line in DESIGN.read_text().splitlines():
        cols = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cols) == 5 and re.fullmatch(r"\d+", cols[4]):
            rows[cols[0].lower().split("-")[0]] = (cols[3], int(cols[4]))
    assert {name: max_len for name, (_, max_len) in rows.items()} == \
        {name: max_len for name, (_, _, max_len) in DATASETS.items()}
    assert "by-publisher" in rows["hyperpartisan"][0] and "7,000" in rows["hyperpartisan"][0]
    assert all("re-split 80/10/10" in rows[name][0] for name in ("imdb", "arxiv"))


def test_plan_shows_the_split_and_lsh_rules_of_each_stage(capsys):
    from raygrid.cli import main

    assert main(["plan", "grids/study_pretrain.yaml", "--no-cost"]) == 0
    out = capsys.readouterr().out
    assert "data     task_mlm: imdb split=study max_len=512 | hyperpartisan/bypublisher split=study max_len=4096" in out
    assert ("lsh      wiki_mlm: qk=shared window=-1..+1 self=masked rounds=mean mask_within_chunks=False "
            "buckets=max_len/chunk (4 cells)") in out
