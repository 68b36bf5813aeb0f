"""raygrid.cost.estimate and raygrid.cost.sizes: FLOPs, data-size estimates, GPU-hours, `raygrid plan` cost columns."""
import json
import re
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raygrid.cost import estimate as cost, sizes as cost_data
from raygrid.attention import FavorParams, LshParams, SoftmaxParams
from raygrid.cli import main
from raygrid.spec.config import CellConfig, DataConfig, ModelConfig, Resources

TINY = cost.Shape(layers=2, hidden=8, intermediate=32, heads=2, vocab=10)


def make_cfg(kind="finetune", checkpoint="x", data=None, **model) -> CellConfig:
    return CellConfig(kind=kind, data=data or DataConfig(dataset="imdb"),
                      model=ModelConfig(checkpoint=checkpoint, **model))


def test_flops_of_a_hand_computed_tiny_shape():
    # block: 4·8² + 2·8·32 = 768 weights; softmax at N = 4: 4·8·4 = 128 per block
    assert TINY.block_params == 768
    assert cost.forward_flops(TINY, SoftmaxParams(), 4) == 2 * (2 * 768 + 128) == 3328
    assert cost.train_flops_per_token(make_cfg(), TINY, 4) == 3 * 3328
    # bottom block frozen: forward everywhere, backward (2x) through the top block only
    assert cost.train_flops_per_token(make_cfg(n_freeze=1), TINY, 4, frozen=1) == 3328 * (1 + 2 * 0.5)
    assert cost.train_flops_per_token(make_cfg(gradient_checkpointing=True), TINY, 4) == 4 * 3328
    # MLM head per predicted token: 2·(8·8 + 8·10) forward, x3 in training
    assert cost.mlm_head_flops(TINY) == 288
    # ... on the mask_prob share of tokens (raygrid.model.encoder.MaskedLM predicts only those)
    assert cost.train_flops_per_token(make_cfg(kind="mlm"), TINY, 4) == pytest.approx(3 * 3328 + 3 * 288 * 0.15)


def test_gated_mlp_counts_three_matrices():
    shape = cost.shape_from_config(dict(cost.KNOWN_SHAPES["answerdotai/ModernBERT-base"]))
    assert shape.gated and shape.block_params == 4 * 768 ** 2 + 3 * 768 * 1152


def test_bert_small_has_12_6m_non_embedding_weights():
    shape = cost.shape_from_config(dict(cost.KNOWN_SHAPES["google/bert_uncased_L-4_H-512_A-8"]))
    assert shape.layers * shape.block_params == 12_582_912


def test_favor_and_lsh_are_cheaper_than_softmax_at_16k():
    h, n = 512, 16384
    softmax = cost.attention_flops(SoftmaxParams(), n, h)
    assert cost.attention_flops(FavorParams(nb_features=256), n, h) < softmax / 20
    assert cost.attention_flops(LshParams(num_hashes=4, chunk_size=128), n, h) < softmax / 10


def test_attention_terms_at_small_n_follow_the_documented_structure():
    h = 64
    favor = FavorParams(nb_features=64)  # hyperbolic: 64 columns from m = 32 directions
    # FAVOR+ costs what softmax costs at N = M + m, whatever N is
    assert cost.attention_flops(favor, 96, h) == cost.attention_flops(SoftmaxParams(), 96, h)
    assert cost.attention_flops(favor, 10, h) == cost.attention_flops(favor, 10_000, h)
    # LSH on a sequence shorter than its window: every round attends it all (R x softmax, + hashing)
    lsh = LshParams(num_hashes=2, chunk_size=64)
    ratio = cost.attention_flops(lsh, 64, h) / cost.attention_flops(SoftmaxParams(), 64, h)
    assert 2 <= ratio < 2.1


def write_split(path, texts):
    pq.write_table(pa.table({"text": texts, "label": [i % 2 for i in range(len(texts))]}), path)


def test_local_files_give_exact_rows_and_capped_char_estimates(tmp_path):
    short, long = "x" * 420, "y" * 42_000  # 100 tokens (+2 special) and far over max_len
    write_split(tmp_path / "train.parquet", [short] * 10 + [long] * 5)
    write_split(tmp_path / "validation.parquet", [short] * 3)
    write_split(tmp_path / "test.parquet", [short] * 4)
    cfg = make_cfg(data=DataConfig(dataset="local", path=str(tmp_path), max_len=128))
    size = cost_data.data_size(cfg, cache_dir=tmp_path / "no-cache")
    assert size.source == "files" and not size.exact
    assert [size.splits[s].docs for s in ("train", "validation", "test")] == [15, 3, 4]
    assert size.splits["train"].tokens == pytest.approx(10 * 102 + 5 * 128)
    assert size.splits["train"].length == pytest.approx((10 * 102 ** 2 + 5 * 128 ** 2) / (10 * 102 + 5 * 128))


def test_data_file_problems_name_the_file_and_key(tmp_path):
    pq.write_table(pa.table({"body": ["x" * 42], "label": [0]}), tmp_path / "train.parquet")
    write_split(tmp_path / "test.parquet", ["x" * 42])
    cfg = make_cfg(data=DataConfig(dataset="local", path=str(tmp_path)))
    with pytest.raises(cost_data.CostUnknown, match=r"train\.parquet: no column 'text' \(data\.text_column; .*body"):
        cost_data.data_size(cfg, cache_dir=tmp_path / "no-cache")
    write_split(tmp_path / "hyperpartisan_byarticle_all.parquet", ["x" * 42])  # the SemEval test file is missing
    semeval = make_cfg(data=DataConfig(dataset="hyperpartisan", subset="byarticle_semeval", path=str(tmp_path)))
    with pytest.raises(cost_data.CostUnknown, match="hyperpartisan_semeval_test"):
        cost_data.data_size(semeval, cache_dir=tmp_path / "no-cache")


def test_mlm_corpus_reads_the_first_limit_documents_and_cuts_blocks(tmp_path):
    write_split(tmp_path / "a.parquet", ["z" * 4200] * 50)  # 1000 tokens (+1 [SEP]) per document
    write_split(tmp_path / "b.parquet", ["z" * 42] * 50)
    data = DataConfig(dataset="wikipedia", path=str(tmp_path), max_len=66, limit={"train": 60}, val_fraction=0.1)
    size = cost_data.data_size(make_cfg(kind="mlm", data=data))
    stream = 50 * 1001 + 10 * 11  # the first 60 documents
    train, val = size.splits["train"], size.splits["validation"]
    assert set(size.splits) == {"train", "validation"}
    assert train.docs == (0.9 * stream) // 64 and train.tokens == train.docs * 66 and train.length == 66
    assert val.docs == (0.1 * stream) // 64


def test_catalogue_imdb_with_the_study_split():
    cfg = make_cfg(data=DataConfig(dataset="imdb", split="study", max_len=512))
    size = cost_data.data_size(cfg, cache_dir="/nonexistent")
    assert size.source == "catalogue"
    assert [size.splits[s].docs for s in ("train", "validation", "test")] == [40_000, 5_000, 5_000]
    per_doc = size.splits["train"].tokens / 40_000
    assert 250 < per_doc < 313  # capping at 512 trims the long tail of ~311-token reviews
    limited = cost_data.data_size(make_cfg(data=DataConfig(dataset="imdb", split="study", limit={"train": 1000})))
    assert limited.splits["train"].docs == 1000 and limited.splits["test"].docs == 5_000


def test_capped_lognormal_moments_match_sampling():
    rng = np.random.default_rng(0)
    mean, sigma, cap = 300.0, 0.7, 512
    x = np.minimum(rng.lognormal(np.log(mean) - sigma ** 2 / 2, sigma, 400_000), cap)
    m1, m2 = cost_data.capped_lognormal_moments(mean, sigma, cap)
    assert m1 == pytest.approx(x.mean(), rel=0.01) and m2 == pytest.approx((x ** 2).mean(), rel=0.01)
    assert cost_data.capped_lognormal_moments(mean, sigma, None)[0] == mean


def test_gpu_hours_from_tflops_and_from_measured_tokens_per_s():
    assert cost.gpu_hours(3.6e17, Resources(plan_tflops=100)) == pytest.approx(1.0)
    measured = Resources(plan_tokens_per_s=1000)
    assert cost.gpu_hours(9e99, measured, train_tokens=3.6e6, eval_tokens=3 * 3.6e6) == pytest.approx(2.0)


def test_workers_shorten_wall_clock_not_gpu_hours():
    cells = [SimpleNamespace(stage=None) for _ in range(4)]
    costs = [cost.CellCost(gpu_hours=2.0) for _ in cells]
    assert cost.wall_clock_hours(cells, costs, Resources()) is None  # concurrency unknown
    assert cost.wall_clock_hours(cells, costs, Resources(max_concurrent_trials=2)) == 4.0
    assert cost.wall_clock_hours(cells, costs, Resources(max_concurrent_trials=2, workers_per_trial=2)) == 2.0


def write_config(folder, **fields):
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"num_hidden_layers": 6, "hidden_size": 64, "intermediate_size": 256,
                                                    "num_attention_heads": 4, "vocab_size": 100, **fields}))
    return str(folder)


def test_stage_cell_takes_its_shape_from_the_parent_chain(tmp_path):
    root = SimpleNamespace(config=make_cfg(checkpoint=write_config(tmp_path / "ckpt"),
                                           config_overrides={"num_hidden_layers": 3, "intermediate_size": 128}))
    middle = SimpleNamespace(config=make_cfg(checkpoint="stage:g/pre/a"), parent=root)
    child = SimpleNamespace(config=make_cfg(checkpoint="stage:g/tapt/a", config_overrides={"intermediate_size": 96}),
                            parent=middle)
    shape = cost.model_shape(child)
    assert (shape.layers, shape.hidden, shape.intermediate) == (3, 64, 96)  # the later stage's override wins
    orphan = SimpleNamespace(config=make_cfg(checkpoint="stage:g/pre/a"), parent=None)
    assert "parent" in cost.cell_cost(orphan, Resources()).unknown


def test_unknown_hub_checkpoint_is_a_question_mark_not_a_crash(tmp_path):
    cell = SimpleNamespace(name="c", config=make_cfg(checkpoint="nobody-xyz/no-such-encoder"), stage=None)
    result = cost.cell_cost(cell, Resources())
    assert result.unknown and "shape unknown" in result.unknown and result.gpu_hours == 0
    grid = SimpleNamespace(name="g", cells=[cell], spec=SimpleNamespace(resources=Resources()))
    lines = cost.plan_lines(grid, cache_dir=tmp_path)
    assert re.search(r"\b1\s+c\s+\?", lines[1]) and any("nobody-xyz" in line for line in lines)
    assert "not priced" in lines[-1]


def test_plan_prints_the_cost_of_the_study_grid(capsys):
    assert main(["plan", "grids/study_finetune.yaml"]) == 0
    out = capsys.readouterr().out
    total = [line for line in out.splitlines() if line.startswith("total:")]
    assert len(total) == 1 and "60 model cells" in total[0]  # 3 tasks x 12, IMDB's x 3 seeds
    assert float(re.search(r"([\d.,]+) GPU-h", total[0]).group(1).replace(",", "")) > 0
    assert out.count(" cpu ") == 3 and "catalogue (estimate)" in out  # 3 TF-IDF cells, hub data


def test_plan_no_cost_only_lists_cells(capsys):
    assert main(["plan", "grids/study_finetune.yaml", "--no-cost"]) == 0
    out = capsys.readouterr().out
    assert "total:" not in out and "PFLOP" not in out and "63 cells" in out
    cells = [line for line in out.splitlines() if line[:4].strip().isdigit()]
    # header; per stage data (and, for the trained stage, optim, seeds, train); cells; which finished
    # (none: this test's runs/ holds no store of it)
    assert len(cells) == 63 and len(out.strip().splitlines()) == 1 + 2 + 3 + 63 + 1
    assert out.strip().splitlines()[-1].startswith("MLflow")


def test_a_tokenized_cache_entry_gives_exact_sizes(tmp_path, tiny_checkpoint, capsys):
    from raygrid.data.prepare import prepare_cells
    from raygrid.spec.loader import load_grid
    from tests.conftest import tiny_grid_yaml

    path = tmp_path / "g.yaml"
    path.write_text(tiny_grid_yaml(tiny_checkpoint))
    grid = load_grid(path)
    assert cost_data.data_size(grid.cells[0].config, tmp_path / "cache").source == "files"
    entry = prepare_cells(grid.cells[:1], tmp_path / "cache", progress=False)[grid.cells[0].name]
    size = cost_data.data_size(grid.cells[0].config, tmp_path / "cache")
    assert size.exact and size.splits["train"].docs == entry.meta["splits"]["train"]["rows"] == 32
    assert size.splits["test"].tokens == entry.meta["splits"]["test"]["tokens"]
    assert main(["plan", str(path), "--cache-dir", str(tmp_path / "cache")]) == 0
    assert "cache (exact)" in capsys.readouterr().out
