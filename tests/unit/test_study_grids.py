"""The four study grids against the study's design (../shared/notes/research_design.md), cell by cell."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from raygrid.spec.loader import load_grid

GRIDS = Path(__file__).resolve().parents[2] / "grids"
DESIGN = Path(__file__).resolve().parents[3] / "shared" / "notes" / "research_design.md"
STUDY_GRIDS = ("study_pretrain.yaml", "study_finetune.yaml", "study_attention.yaml", "study_lsh_mask.yaml")
# research_design.md, "The study's exact split rules": every task takes the study's split rule and text
# preparation (`split: study`, `text_rule: study`); Hyperpartisan is the by-publisher release.
DATASETS = {"imdb": (None, "study", 512), "hyperpartisan": ("bypublisher", "study", 4096),
            "arxiv": (None, "study", 16384), "wikipedia": (None, "standard", 512)}
# "Wikipedia corpus (MLM)": 600,000 keyword-selected articles, one sequence each, 450,000 cut to 128, no validation.
STUDY_WIKIPEDIA = {"corpus_rule": "study", "mlm_layout": "document", "short_rows": 450_000, "short_len": 128,
                   "val_fraction": 0.0, "path": None}
# research_design.md, "Attention grid": Reformer's rules; num_hashes {2, 4} x chunk_size {64, 128}, mask off.
STUDY_LSH = {"qk": "shared", "look_backward": 1, "look_forward": 1, "exclude_self": True, "round_combine": "mean",
             "num_buckets": None}


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
        if data.dataset == "wikipedia":  # the study's corpus, read in order until 600,000 are kept
            assert {key: getattr(data, key) for key in STUDY_WIKIPEDIA} == STUDY_WIKIPEDIA, cell.name
            assert data.limit.train == 600_000, cell.name
        else:  # the study's documents of each task; task MLM: one sequence per document, cut at max_len
            assert data.text_rule == "study" and data.study_sizes is None, cell.name
            assert data.mlm_layout == ("document" if cell.config.kind == "mlm" else "packed"), cell.name


def test_every_lsh_cell_runs_the_study_rules():
    grids = {}
    for name, cell in cells():
        attention = cell.config.attention
        if attention.kind != "lsh":
            continue
        assert {key: getattr(attention, key) for key in STUDY_LSH} == STUDY_LSH, cell.name
        grids.setdefault(name, set()).add((attention.num_hashes, attention.chunk_size, attention.mask_within_chunks))
    variants = {(r, c, False) for r in (2, 4) for c in (64, 128)}
    assert grids == {"study_pretrain.yaml": variants, "study_attention.yaml": variants,
                     "study_lsh_mask.yaml": {(2, 64, True), (2, 64, False)}}


def test_experiment_2_selects_experiment_1_winners_per_task():
    stage = load_grid(GRIDS / "study_attention.yaml").spec.stages[0]
    assert stage.select.grid == "study_finetune.yaml" and stage.select.stage == "finetune"
    assert stage.select.by == "best_val_f1_macro" and stage.select.mode == "max"
    assert set(stage.select.keys) == {"model.pooling", "model.n_freeze", "model.p_drop"}


def test_the_design_agrees_with_this_test_and_the_split_rules():
    if not DESIGN.is_file():
        pytest.skip(f"{DESIGN} not found (CI lays ../shared beside the clone)")
    from raygrid.data.corpus import STUDY_KEYWORDS, STUDY_MIN_KEYWORDS, STUDY_WORDS
    from raygrid.data.splits import STUDY_ORDER
    from raygrid.spec.config import StudySizes

    text = DESIGN.read_text()
    rows = {}
    for line in text.splitlines():
        cols = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cols) == 5 and re.fullmatch(r"\d+", cols[4]):
            rows[cols[0].lower().split("-")[0]] = int(cols[4])
    assert rows == {name: max_len for name, (_, _, max_len) in DATASETS.items()}
    rules = text[text.index("### The study's exact split rules"):]
    imdb = rules[rules.index("**IMDB study split:**"):rules.index("**ArXiv study split:**")]
    arxiv = rules[rules.index("**ArXiv study split:**"):rules.index("**Hyperpartisan by-publisher")]
    assert "HF `test` then `train`" in imdb and "first part = test, second = validation" in imdb
    assert STUDY_ORDER["imdb"] == (("test", "train"), "test")
    assert "HF `test`, `train`, `validation`" in arxiv and "first part = validation, second = test" in arxiv
    assert STUDY_ORDER["arxiv"] == (("test", "train", "validation"), "validation")
    hyperpartisan = rules[rules.index("**Hyperpartisan by-publisher"):rules.index("**Wikipedia corpus")]
    assert "52,000 rows" in hyperpartisan and "resized to 13,000" in hyperpartisan and "≥ 7,000" in hyperpartisan
    assert (StudySizes().train, StudySizes().heldout) == (52_000, 13_000)
    wikipedia = rules[rules.index("**Wikipedia corpus"):rules.index("**Classification head")]
    assert "at least **3 distinct**" in wikipedia and "first 600 whitespace-separated words" in wikipedia
    assert (STUDY_MIN_KEYWORDS, STUDY_WORDS) == (3, 600)
    listed = wikipedia[wikipedia.index("from this list, stop at 600,000 kept:") + 37:wikipedia.index("Cut each")]
    assert set(listed.replace(".", " ").split()) == STUDY_KEYWORDS
    assert "**first 450,000**" in wikipedia and "cut to 128 tokens" in wikipedia and "150,000 keep 512" in wikipedia


def test_plan_shows_the_split_and_lsh_rules_of_each_stage(capsys):
    from raygrid.cli import main

    assert main(["plan", "grids/study_pretrain.yaml", "--no-cost"]) == 0
    out = capsys.readouterr().out
    assert ("data     task_mlm: imdb split=study text=study layout=document max_len=512 | hyperpartisan/bypublisher "
            "split=study text=study layout=document max_len=4096") in out
    assert "data     wiki_mlm: wikipedia corpus=study no-validation layout=document short=450000x128 max_len=512" in out
    assert "lsh      wiki_mlm: qk=shared window=-1..+1 self=masked rounds=mean mask_within_chunks=False (4 cells)" in out
