"""Local data adapters, split policies, the tokenized cache and per-batch padding."""
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raygrid.spec.config import DataConfig
from raygrid.data.batching import pad_batch
from raygrid.data.cache import prepare
from raygrid.data.sources import DataError, load_raw
from raygrid.data.splits import apply_split_policy
from tests.conftest import SAMPLE


def write_split(folder, split, texts, labels, ext="parquet"):
    table = pa.table({"text": texts, "label": pa.array(labels, pa.int64())})
    folder.mkdir(parents=True, exist_ok=True)
    if ext == "parquet":
        pq.write_table(table, folder / f"{split}.parquet")
    elif ext == "jsonl":
        (folder / f"{split}.jsonl").write_text("".join(json.dumps({"text": t, "label": l}) + "\n"
                                                       for t, l in zip(texts, labels)))
    else:
        import pyarrow.csv as pcsv
        pcsv.write_csv(table, folder / f"{split}.csv")


def docs(n, seed=0):
    rng = np.random.default_rng(seed)
    return [f"document {i} " + "word " * int(rng.integers(1, 30)) for i in range(n)], [i % 2 for i in range(n)]


@pytest.mark.parametrize("ext", ["parquet", "csv", "jsonl"])
def test_local_files_in_every_format(tmp_path, ext):
    for split, n in (("train", 20), ("dev", 6), ("test", 6)):
        write_split(tmp_path, split, *docs(n), ext=ext)
    raw = load_raw(DataConfig(dataset="local", path=str(tmp_path)))
    assert {s: t.num_rows for s, t in raw.tables.items()} == {"train": 20, "validation": 6, "test": 6}
    assert raw.label_names == ["0", "1"]


def test_bad_rows_name_file_and_row(tmp_path):
    write_split(tmp_path, "train", ["ok", "  ", "fine"], [0, 1, 0])
    write_split(tmp_path, "test", ["a"], [0])
    with pytest.raises(DataError, match=r"train\.parquet: row 1: empty or missing text"):
        load_raw(DataConfig(dataset="local", path=str(tmp_path)))


def test_bad_rows_can_be_skipped_and_counted(tmp_path, tiny_checkpoint):
    write_split(tmp_path, "train", ["ok one", "  ", "fine two", "more", "last"] * 4, [0, 1, 0, 1, 0] * 4)
    pq.write_table(pa.table({"text": ["a", None, "b c", "d"], "label": pa.array([0, 1, None, 1], pa.int64())}),
                   tmp_path / "test.parquet")
    write_split(tmp_path, "validation", ["x", "y", "z"], [0, 1, 1])
    cfg = DataConfig(dataset="imdb", path=str(tmp_path), bad_rows="skip")
    raw = load_raw(cfg)
    assert raw.skipped == {"train": 4, "test": 2}
    assert raw.tables["train"].num_rows == 16 and raw.tables["test"]["text"].to_pylist() == ["a", "d"]
    # labels outside the label set are dropped too (imdb has 2 classes)
    write_split(tmp_path, "validation", ["x", "y", "z"], [0, 1, 5])
    assert load_raw(cfg).skipped == {"train": 4, "test": 2, "validation": 1}
    with pytest.warns(UserWarning, match="skipped 7 bad rows"):
        data = prepare(cfg, str(tiny_checkpoint), tmp_path / "cache", progress=False)
    assert data.meta["skipped_rows"] == {"train": 4, "test": 2, "validation": 1}
    with pytest.raises(DataError, match=r"train\.parquet: row 1: empty or missing text \(4 such rows"):
        load_raw(cfg.model_copy(update={"bad_rows": "error"}))


def test_corpora_are_not_labelled_datasets():
    from raygrid.spec.config import DatasetName, CORPORA
    from raygrid.data.sources import ADAPTERS
    from typing import get_args

    assert set(get_args(DatasetName)) == set(ADAPTERS) | set(CORPORA)
    with pytest.raises(DataError, match="wikipedia is an unlabelled corpus"):
        load_raw(DataConfig(dataset="wikipedia", path="/tmp"))


def test_label_outside_label_set(tmp_path):
    write_split(tmp_path, "train", ["a", "b"], [0, 1])
    write_split(tmp_path, "test", ["a", "b", "c"], [0, 1, 7])
    with pytest.raises(DataError, match=r"test\.parquet: row 2: label 7 is not one of"):
        load_raw(DataConfig(dataset="local", path=str(tmp_path)))


def test_missing_column_and_missing_train(tmp_path):
    pq.write_table(pa.table({"body": ["x"], "label": [0]}), tmp_path / "train.parquet")
    with pytest.raises(DataError, match="missing column 'text'"):
        load_raw(DataConfig(dataset="local", path=str(tmp_path)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no train file"):
        load_raw(DataConfig(dataset="local", path=str(tmp_path / "empty")))


def test_standard_split_carves_validation_deterministically(tmp_path):
    write_split(tmp_path, "train", *docs(100))
    write_split(tmp_path, "test", *docs(10, 1))
    cfg = DataConfig(dataset="local", path=str(tmp_path), val_fraction=0.2)
    first = apply_split_policy(load_raw(cfg), cfg)
    second = apply_split_policy(load_raw(cfg), cfg)
    assert first["validation"].num_rows == 20 and first["train"].num_rows == 80
    assert first["validation"]["text"].to_pylist() == second["validation"]["text"].to_pylist()
    assert not set(first["validation"]["text"].to_pylist()) & set(first["train"]["text"].to_pylist())
    assert sum(first["validation"]["label"].to_pylist()) == 10  # stratified


def test_resplit_is_80_10_10_and_study_is_only_the_study_datasets_rule(tmp_path):
    write_split(tmp_path, "train", *docs(80))
    write_split(tmp_path, "test", *docs(20, 1))
    cfg = DataConfig(dataset="local", path=str(tmp_path), split="resplit")
    splits = apply_split_policy(load_raw(cfg), cfg)
    assert [splits[s].num_rows for s in ("train", "validation", "test")] == [80, 10, 10]
    study = cfg.model_copy(update={"split": "study"})
    with pytest.raises(DataError, match="study is the study's rule for imdb, arxiv and hyperpartisan"):
        apply_split_policy(load_raw(study), study)


def test_cache_tokenizes_once_and_keys_on_content(tmp_path, tiny_checkpoint):
    cfg = DataConfig(dataset="hyperpartisan", path=str(SAMPLE), max_len=32, limit={"train": 10})
    first = prepare(cfg, str(tiny_checkpoint), tmp_path, progress=False)
    mtime = (Path(first.folder) / "train.parquet").stat().st_mtime_ns
    again = prepare(cfg, str(tiny_checkpoint), tmp_path, progress=False)
    assert again.folder == first.folder and (Path(first.folder) / "train.parquet").stat().st_mtime_ns == mtime
    other = prepare(cfg.model_copy(update={"max_len": 16}), str(tiny_checkpoint), tmp_path, progress=False)
    assert other.folder != first.folder
    table = pq.read_table(first.split_path("train"))
    assert table.num_rows == 10 and max(len(r) for r in table["input_ids"].to_pylist()) <= 32
    assert first.meta["splits"]["train"]["share_truncated"] > 0.5  # news articles are long


def test_each_file_is_read_once_and_the_key_follows_content_not_path(tmp_path, monkeypatch):
    import shutil

    from raygrid.data import documents
    from raygrid.data.cache import cache_key

    write_split(tmp_path / "a", "train", *docs(20))
    write_split(tmp_path / "a", "test", *docs(6, 1))
    reads = []
    read_batches = documents.read_batches
    monkeypatch.setattr(documents, "read_batches", lambda path, columns=None: reads.append(path.name)
                        or read_batches(path, columns))
    cfg = DataConfig(dataset="local", path=str(tmp_path / "a"))
    raw = load_raw(cfg)  # label names come from train, read once with the rest
    assert sorted(reads) == ["test.parquet", "train.parquet"] and raw.label_names == ["0", "1"]
    key = cache_key(cfg, raw.fingerprint, "bert-base-uncased")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    moved = cfg.model_copy(update={"path": str(tmp_path / "b")})
    assert cache_key(moved, load_raw(moved).fingerprint, "bert-base-uncased") == key
    write_split(tmp_path / "b", "test", *docs(6, 2))
    assert cache_key(moved, load_raw(moved).fingerprint, "bert-base-uncased") != key
    assert cache_key(cfg, raw.fingerprint, "bert-base-uncased", kind="mlm") != key


def test_hub_parquet_shards_are_read_through_the_hub_layout(tmp_path, monkeypatch):
    """The hub code path (snapshot_download of the Parquet shards) on local files laid out like stanfordnlp/imdb."""
    import huggingface_hub

    for name, texts in (("train-00000-of-00002", ["a", " ", "b"]), ("train-00001-of-00002", ["c", "d"]),
                        ("test-00000-of-00001", ["e", "f"])):
        write_split(tmp_path / "plain_text", name, texts, [0, 1, 0, 1, 0][:len(texts)])
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **kwargs: str(tmp_path))
    raw = load_raw(DataConfig(dataset="imdb", bad_rows="skip"))
    assert raw.tables["train"]["text"].to_pylist() == ["a", "b", "c", "d"]  # shards in order, the blank row dropped
    assert raw.skipped == {"train": 1} and raw.label_names == ["neg", "pos"]
    assert raw.origin == {"train": "stanfordnlp/imdb:plain_text/train-*.parquet",
                          "test": "stanfordnlp/imdb:plain_text/test-*.parquet"}
    (tmp_path / "plain_text" / "test-00000-of-00001.parquet").unlink()
    with pytest.raises(DataError, match=r"stanfordnlp/imdb: no files match plain_text/test-\*\.parquet"):
        load_raw(DataConfig(dataset="imdb", bad_rows="skip"))


def test_length_stats_by_hand():
    from raygrid.data.cache import length_stats

    table = pa.table({"n_tokens": pa.array([1, 2, 3, 4, 10], pa.int32()), "label": [0, 0, 1, 1, 1],
                      "truncated": [False, False, False, False, True]})
    assert length_stats(table, 8) == {"rows": 5, "tokens": 20, "mean_len": 4.0, "median_len": 3.0,
                                      "p95_len": pytest.approx(8.8), "max_len": 10, "share_truncated": 0.2,
                                      "label_counts": {0: 2, 1: 3}}
    assert length_stats(table.slice(0, 0), 8) == {"rows": 0}


def test_cache_on_a_storage_uri(tmp_path, tiny_checkpoint):
    """A URI root goes through pyarrow's filesystem layer, as s3:// or gs:// would (file:// needs no credentials)."""
    from raygrid.data.cache import PreparedData, cache_root
    from raygrid.data.mlm_data import prepare_mlm

    root = cache_root(f"file://{tmp_path}/shared-cache")
    assert root.startswith("file://")  # kept as a URI, not folded into a local path
    cfg = DataConfig(dataset="hyperpartisan", path=str(SAMPLE), max_len=32, limit={"train": 10})
    first = prepare(cfg, str(tiny_checkpoint), root, progress=False)
    assert first.folder.startswith("file://") and first.folder.endswith(first.meta["key"])
    local = prepare(cfg, str(tiny_checkpoint), tmp_path / "local", progress=False)
    assert first.read_split("train").equals(local.read_split("train"))  # same rows either way
    assert PreparedData.load(first.folder).meta == first.meta
    # published whole: meta.json (the completion marker) and every split, no temporary leftovers
    entry = tmp_path / "shared-cache" / "tokenized" / Path(first.folder).name
    assert sorted(p.name for p in entry.iterdir()) == ["meta.json", "test.parquet", "train.parquet", "validation.parquet"]
    mlm = prepare_mlm(cfg.model_copy(update={"max_len": 16}), str(tiny_checkpoint), root, progress=False)
    assert mlm.splits == ["train", "validation"] and mlm.read_split("train").num_rows > 0
    assert prepare(cfg, str(tiny_checkpoint), root, progress=False).folder == first.folder  # reused


def test_pad_batch_pads_to_longest_row():
    batch = pad_batch({"input_ids": np.array([np.array([5, 6, 7]), np.array([8])], dtype=object),
                       "label": np.array([1, 0])}, pad_token_id=0, multiple=4)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 0], [8, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 0, 0, 0]]
    assert batch["labels"].tolist() == [1, 0]


def test_a_local_hyperpartisan_folder_refuses_subsets_it_does_not_hold():
    with pytest.raises(DataError, match="data.subset: a local hyperpartisan Parquet folder holds byarticle or "
                                        "byarticle_semeval, not 'other'"):
        load_raw(DataConfig(dataset="hyperpartisan", path=str(SAMPLE), subset="other"))
    with pytest.raises(DataError, match="no articles-training-bypublisher-.*xml/.zip"):  # by-publisher = XML archives
        load_raw(DataConfig(dataset="hyperpartisan", path=str(SAMPLE), subset="bypublisher"))
    with pytest.raises(DataError, match="text_rule: study takes Hyperpartisan's paragraph texts from the XML"):
        load_raw(DataConfig(dataset="hyperpartisan", path=str(SAMPLE), text_rule="study"))
