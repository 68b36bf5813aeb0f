"""The cached training split is a seeded permutation of its rows (label-sorted sources get mixed); bounded buckets."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raygrid.data import cache_writer
from raygrid.data.cache import prepare
from raygrid.data.cache_writer import DOCUMENT_SCHEMA, SplitFiles
from raygrid.spec.config import DataConfig
from tests.unit.test_data import docs, write_split


def rows(n: int, start: int = 0) -> pa.Table:
    """Row i: ids [i] * (1 + i % 5), label i // (n // 2) (sorted: all 0, then all 1)."""
    ids = [[i] * (1 + i % 5) for i in range(start, start + n)]
    return pa.table({"input_ids": pa.array(ids, pa.list_(pa.int32())), "label": [i * 2 // 60 for i in range(start, start + n)],
                     "n_tokens": pa.array([len(r) for r in ids], pa.int32()), "truncated": [False] * n})


def test_a_permuted_split_is_written_in_its_final_order_bucket_by_bucket(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_writer, "BUCKET_GROUPS", 2)  # buckets of 8 rows: 60 rows -> 8 bucket files
    order = np.random.default_rng(0).permutation(60)
    files = SplitFiles(tmp_path, ("train", "test"), DOCUMENT_SCHEMA, 4, permute={"train": order})
    for start in range(0, 60, 7):  # arrival in awkward chunks
        files.add("train", rows(min(7, 60 - start), start))
        files.add("test", rows(min(7, 60 - start), start))
    assert len(list((tmp_path / "_train.buckets").iterdir())) == 8
    stats = files.close()
    train = pq.read_table(tmp_path / "train.parquet")
    first = [r[0] for r in train["input_ids"].to_pylist()]
    assert [first[order[i]] for i in range(60)] == list(range(60))  # row i went to position order[i]
    assert [r[0] for r in pq.read_table(tmp_path / "test.parquet")["input_ids"].to_pylist()] == list(range(60))
    assert stats["train"]["label_counts"] == {0: 30, 1: 30} and stats["train"] == stats["test"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test.parquet", "train.parquet"]  # buckets removed


def test_the_cached_training_split_of_a_label_sorted_source_is_mixed_and_seeded(tmp_path, tiny_checkpoint):
    texts, _ = docs(88)
    write_split(tmp_path / "d", "train", texts[:80], [0] * 40 + [1] * 40)  # as IMDB's train file
    for split in ("validation", "test"):
        write_split(tmp_path / "d", split, texts[80:], [0] * 4 + [1] * 4)

    def train_labels(seed, root="a"):  # a fresh cache root each time: tokenized again, not a cache hit
        cfg = DataConfig(dataset="local", path=str(tmp_path / "d"), max_len=32, split_seed=seed)
        entry = prepare(cfg, str(tiny_checkpoint), tmp_path / f"cache-{root}-{seed}", progress=False)
        return entry.read_split("train")["label"].to_pylist(), entry.read_split("test")["label"].to_pylist()
    labels, test = train_labels(0)
    assert sorted(labels) == [0] * 40 + [1] * 40 and labels[:40].count(0) < 30  # mixed, not 40 zeros first
    assert test == [0] * 4 + [1] * 4  # evaluation splits keep the source order
    assert train_labels(0, root="b")[0] == labels and train_labels(1)[0] != labels
