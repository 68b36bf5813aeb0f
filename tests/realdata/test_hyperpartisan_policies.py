"""Hyperpartisan split choices on the real files: shared documents between splits are counted and reported."""
import pytest

from raygrid.spec.config import DataConfig
from raygrid.data.sources import load_raw
from raygrid.data.splits import apply_split_policy, cross_split_duplicates

pytestmark = pytest.mark.realdata


def test_longformer_split_leak_is_counted(shared_data):
    cfg = DataConfig(dataset="hyperpartisan", path=str(shared_data))
    counts = cross_split_duplicates(apply_split_policy(load_raw(cfg), cfg))
    assert counts["test&train"] == 51 and counts["test&validation"] == 7


def test_semeval_subset_nearly_leak_free(shared_data):
    cfg = DataConfig(dataset="hyperpartisan", path=str(shared_data), subset="byarticle_semeval")
    raw = load_raw(cfg)
    assert raw.tables["train"].num_rows == 645 and raw.tables["test"].num_rows == 628
    splits = apply_split_policy(raw, cfg)
    assert splits["validation"].num_rows == 65 and splits["train"].num_rows == 580  # 10 % carved, stratified
    # the official test set repeats 2 training texts verbatim (a fact of the data), vs 51 + 7 above
    assert cross_split_duplicates(splits) == {"validation&train": 0, "test&train": 2, "test&validation": 0}


def test_preparing_the_leaky_split_warns(shared_data, tiny_checkpoint, tmp_path):
    from raygrid.data.cache import prepare

    cfg = DataConfig(dataset="hyperpartisan", path=str(shared_data), max_len=16)
    with pytest.warns(UserWarning, match="shared between splits"):
        data = prepare(cfg, str(tiny_checkpoint), tmp_path, progress=False)
    assert data.meta["leaks"] == {"test&train": 51, "test&validation": 7}
