"""Staged grids: dependency order, parent matching by axis values, and refusals before launch."""
from pathlib import Path

import pytest

from raygrid.spec.grid import GridError
from raygrid.spec.loader import load_grid

STAGED = """
name: chain
base:
  model: {checkpoint: /tmp/ckpt, from_scratch: true, tokenizer: /tmp/tok}
  optim: {epochs: 1}
stages:
  - name: ft
    init: tapt
    base: {attention: {kind: softmax}}
    axes:
      task: [{label: hp, set: {data: {dataset: hyperpartisan, path: /tmp/hp}}},
             {label: imdb, set: {data: {dataset: imdb, path: /tmp/imdb}}}]
      model.pooling: [cls, mean]
  - name: wiki
    base: {kind: mlm, data: {dataset: wikipedia, path: /tmp/wiki}}
    axes:
      attention: [{kind: softmax}, {kind: lsh, num_hashes: 2}]
  - name: tapt
    init: wiki
    base: {kind: mlm}
    axes:
      task: [{label: hp, set: {data: {dataset: hyperpartisan, path: /tmp/hp}}},
             {label: imdb, set: {data: {dataset: imdb, path: /tmp/imdb}}}]
      attention: [{kind: softmax}, {kind: lsh, num_hashes: 2, chunk_size: 64}]
"""


def write(folder: Path, text: str, name: str = "grid.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def error_of(path: Path) -> str:
    with pytest.raises(GridError) as err:
        load_grid(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    return message


def test_stages_run_parents_first_and_each_cell_finds_its_one_parent(tmp_path):
    grid = load_grid(write(tmp_path, STAGED))
    assert grid.stage_order == ["wiki", "tapt", "ft"]  # written ft, wiki, tapt: sorted by init
    assert [len(grid.stage_cells(s)) for s in grid.stage_order] == [2, 4, 4]
    by_name = {c.name: c for c in grid.cells}
    tapt = by_name["tapt/task=hp,attention=lsh(num_hashes=2,chunk_size=64)"]
    # chunk_size 64 is the default, so this equals the wiki cell that left it implicit
    assert tapt.parent.name == "wiki/attention=lsh(num_hashes=2)" and tapt.parent_grid == "chain"
    assert tapt.config.model.checkpoint == "stage:chain/wiki/attention=lsh(num_hashes=2)"
    assert tapt.config.model.from_scratch is False and tapt.config.model.tokenizer == "/tmp/tok"
    # the fine-tuning stage fixes softmax in its base: it matches the softmax TAPT cell of its task
    ft = by_name["ft/task=imdb,pooling=mean"]
    assert ft.parent.name == "tapt/task=imdb,attention=softmax" and ft.config.kind == "finetune"
    assert ft.parent.parent.name == "wiki/attention=softmax"
    assert grid.external_parents() == []


def test_unknown_stage_and_cycles_are_refused(tmp_path):
    assert "stages.tapt.init: no stage 'wikii'" in error_of(write(tmp_path, STAGED.replace("init: wiki", "init: wikii")))
    cyclic = STAGED.replace("base: {kind: mlm, data: {dataset: wikipedia, path: /tmp/wiki}}",
                            "init: ft\n    base: {kind: mlm, data: {dataset: wikipedia, path: /tmp/wiki}}")
    assert "init forms a cycle" in error_of(write(tmp_path, cyclic))


def test_a_cell_without_a_matching_parent_is_refused(tmp_path):
    # FAVOR+ was never pretrained in stage wiki
    text = STAGED.replace("attention: [{kind: softmax}, {kind: lsh, num_hashes: 2, chunk_size: 64}]",
                          "attention: [{kind: softmax}, {kind: favor, nb_features: 64}]")
    message = error_of(write(tmp_path, text))
    assert "stages.tapt.init: no cell of stage wiki matches cell (task=hp, attention=favor(nb_features=64))" in message


def test_a_child_that_does_not_vary_a_bundle_axis_of_its_parent_is_refused(tmp_path):
    text = STAGED.replace("""      task: [{label: hp, set: {data: {dataset: hyperpartisan, path: /tmp/hp}}},
             {label: imdb, set: {data: {dataset: imdb, path: /tmp/imdb}}}]
      model.pooling""", "      model.pooling").replace("base: {attention: {kind: softmax}}",
                                                         "base: {attention: {kind: softmax}, data: {dataset: imdb}}")
    assert "this stage must vary 'task' too" in error_of(write(tmp_path, text))


def test_ambiguous_parents_are_refused(tmp_path):
    text = STAGED.replace("attention: [{kind: softmax}, {kind: lsh, num_hashes: 2}]",
                          "attention: [{kind: softmax}, {kind: lsh, num_hashes: 2}]\n      optim.lr: [1.0e-4, 2.0e-4]")
    text = text.replace("base: {kind: mlm}\n", "base: {kind: mlm, optim: {lr: 1.0e-4}}\n")
    grid = load_grid(write(tmp_path, text))  # the child fixes lr: one parent each
    assert all(c.parent.config.optim.lr == 1e-4 for c in grid.stage_cells("tapt"))
    text = text.replace("base: {kind: mlm, optim: {lr: 1.0e-4}}\n", "base: {kind: mlm, optim: {lr: 3.0e-4}}\n")
    assert "no cell of stage wiki matches" in error_of(write(tmp_path, text))


def test_a_stage_with_init_may_not_name_its_own_checkpoint(tmp_path):
    text = STAGED.replace("base: {kind: mlm}\n", "base: {kind: mlm, model: {checkpoint: /tmp/other}}\n")
    assert "stages.tapt.base.model.checkpoint: a stage with init takes its weights from stage wiki" in \
        error_of(write(tmp_path, text))


def test_positions_must_agree_along_a_chain(tmp_path):
    text = STAGED.replace("from_scratch: true, tokenizer: /tmp/tok}", "from_scratch: true, tokenizer: /tmp/tok, positions: rope}")
    text = text.replace("base: {attention: {kind: softmax}}", "base: {attention: {kind: softmax}, model: {positions: learned}}")
    assert "model.positions learned differs from its parent stage's (rope)" in error_of(write(tmp_path, text))


def test_rope_needs_a_scratch_model_or_a_rope_parent(tmp_path):
    text = STAGED.replace("from_scratch: true, tokenizer: /tmp/tok}", "from_scratch: false, tokenizer: /tmp/tok, positions: rope}")
    assert "rope needs from_scratch: true" in error_of(write(tmp_path, text))


def test_a_stage_can_start_from_another_grid_file(tmp_path):
    write(tmp_path, STAGED, "pretrain.yaml")
    child = write(tmp_path, """
name: finetune-only
base:
  data: {dataset: hyperpartisan, path: /tmp/hp}
stages:
  - name: ft
    init: {grid: pretrain.yaml, stage: tapt}
    base: {attention: {kind: lsh, num_hashes: 2}}
    axes:
      task: [{label: hp, set: {data: {dataset: hyperpartisan}}}]
      seed: [0]
""")
    grid = load_grid(child)
    (cell,) = grid.cells
    assert cell.parent.name == "tapt/task=hp,attention=lsh(num_hashes=2,chunk_size=64)" and cell.parent_grid == "chain"
    assert grid.external_parents() == [cell]
    missing = write(tmp_path, child.read_text().replace("stage: tapt", "stage: nope"), "bad.yaml")
    assert "grid pretrain.yaml has no stage 'nope'" in error_of(missing)


def test_staged_grid_rejects_top_level_axes_and_duplicate_stage_names(tmp_path):
    assert "axes: a staged grid puts its axes inside each stage" in error_of(write(tmp_path, STAGED + "axes: {seed: [0]}\n"))
    dup = STAGED.replace("- name: tapt", "- name: wiki")
    assert "stage names must be unique" in error_of(write(tmp_path, dup))


def test_only_mlm_stages_can_be_started_from(tmp_path):
    text = STAGED.replace("base: {kind: mlm, data: {dataset: wikipedia, path: /tmp/wiki}}",
                          "base: {kind: finetune, data: {dataset: imdb, path: /tmp/wiki}}")
    assert "stage wiki has finetune cells; only mlm cells export weights" in error_of(write(tmp_path, text))
    tfidf_child = STAGED.replace("base: {attention: {kind: softmax}}", "base: {attention: {kind: softmax}, kind: tfidf}")
    assert "base.kind: a tfidf cell cannot start from weights" in error_of(write(tmp_path, tfidf_child))


def test_a_task_mlm_parent_must_split_the_task_as_its_child_does(tmp_path):
    # the TAPT stage reads hyperpartisan's train+validation text; a child re-splitting differently could test on it
    text = STAGED.replace("base: {attention: {kind: softmax}}", "base: {attention: {kind: softmax}, data: {split_seed: 3}}")
    assert "data.split_seed 3 differs from its parent's 0" in error_of(write(tmp_path, text))
    other_limit = STAGED.replace("base: {attention: {kind: softmax}}",
                                 "base: {attention: {kind: softmax}, data: {limit: {train: 10}}}")
    assert load_grid(write(tmp_path, other_limit)).cells  # a subsample of the same split is fine


def test_a_chained_stage_may_not_vary_its_checkpoint(tmp_path):
    text = STAGED.replace("      model.pooling: [cls, mean]", "      model.checkpoint: [/a, /b]")
    assert "stages.ft.axes.model.checkpoint: a stage with init takes its weights from stage tapt" in \
        error_of(write(tmp_path, text))
    # nor set it through a section-valued axis or a bundle (axis values apply after the link)
    for axis in ("      model: [{checkpoint: /a}]", "      other: [{label: a, set: {model: {from_scratch: true}}}]"):
        key = "checkpoint" if "checkpoint" in axis else "from_scratch"
        assert f"stages.ft.axes.model.{key}: a stage with init takes its weights from stage tapt" in \
            error_of(write(tmp_path, STAGED.replace("      model.pooling: [cls, mean]", axis)))


def test_empty_axis_block_lists_are_refused(tmp_path):
    message = error_of(write(tmp_path, STAGED.replace("axes:\n      attention: [{kind: softmax}, {kind: lsh, num_hashes: 2}]",
                                                      "axes: []")))
    assert "stages.1.axes: " in message  # stage wiki, the second written
