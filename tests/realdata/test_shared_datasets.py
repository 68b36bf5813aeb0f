"""The real datasets in ../shared/data, read through raygrid's own code path (skipped when absent).

Checks the numbers the data README promises, the Longformer split's known leaks, the split
policies, the TF-IDF baseline on the real Hyperpartisan split and the dataset statistics.
"""
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from raygrid.training.baseline import tfidf_lr
from raygrid.spec.config import DataConfig
from raygrid.data import hyperpartisan_hub as hp
from raygrid.data import hyperpartisan_splits as hps
from raygrid.data.sources import load_raw
from raygrid.data.splits import apply_split_policy
from raygrid.data.stats import dataset_stats, format_stats

pytestmark = pytest.mark.realdata


def label_counts(table):
    labels = table["label"].to_numpy()
    return {int(v): int((labels == v).sum()) for v in np.unique(labels)}


@pytest.fixture(scope="module")
def imdb(shared_data):
    return load_raw(DataConfig(dataset="imdb", path=str(shared_data)))


@pytest.fixture(scope="module")
def hyperpartisan(shared_data):
    return load_raw(DataConfig(dataset="hyperpartisan", path=str(shared_data)))


@pytest.fixture(scope="module")
def hp_files(shared_data):
    """The Hyperpartisan Parquet files with every column (ids included), read with pyarrow directly."""
    names = {"train": "train", "validation": "validation", "test": "test", "all": "byarticle_all",
             "semeval_test": "semeval_test"}
    return {key: pq.read_table(shared_data / f"hyperpartisan_{name}.parquet") for key, name in names.items()}


@pytest.fixture(scope="module")
def hp_sidecar(shared_data):
    return json.loads((shared_data / "hyperpartisan.json").read_text())


def test_imdb_counts_and_balance(imdb):
    assert imdb.label_names == ["neg", "pos"]
    assert {s: t.num_rows for s, t in imdb.tables.items()} == {"train": 25_000, "test": 25_000}
    for table in imdb.tables.values():
        assert label_counts(table) == {0: 12_500, 1: 12_500}


def test_imdb_standard_policy_carves_a_stratified_validation_set(imdb, shared_data):
    cfg = DataConfig(dataset="imdb", path=str(shared_data), split="standard", val_fraction=0.1, split_seed=0)
    splits = apply_split_policy(imdb, cfg)
    assert {s: t.num_rows for s, t in splits.items()} == {"train": 22_500, "validation": 2_500, "test": 25_000}
    assert label_counts(splits["validation"]) == {0: 1_250, 1: 1_250}
    assert label_counts(splits["train"]) == {0: 11_250, 1: 11_250}
    assert splits["test"].equals(imdb.tables["test"])
    again = apply_split_policy(imdb, cfg)
    assert all(again[s].equals(splits[s]) for s in splits)  # deterministic
    other = apply_split_policy(imdb, cfg.model_copy(update={"split_seed": 1}))
    assert not other["validation"].equals(splits["validation"])


def test_hyperpartisan_longformer_split_counts(hyperpartisan):
    assert hyperpartisan.label_names == ["false", "true"]
    counts = {s: (t.num_rows, label_counts(t)) for s, t in hyperpartisan.tables.items()}
    assert counts == {"train": (516, {0: 329, 1: 187}), "validation": (64, {0: 38, 1: 26}),
                      "test": (65, {0: 38, 1: 27})}


def test_hyperpartisan_files_match_load_raw(hyperpartisan, hp_files):
    for split in ("train", "validation", "test"):
        assert hp_files[split].select(["text", "label"]).equals(hyperpartisan.tables[split])
    assert hp_files["all"].num_rows == 645 and label_counts(hp_files["all"]) == {0: 407, 1: 238}
    assert hp_files["semeval_test"].num_rows == 628 and label_counts(hp_files["semeval_test"]) == {0: 314, 1: 314}
    assert len(set(hp_files["all"]["id"].to_pylist())) == 645


def test_longformer_split_overlaps(hp_files, hp_sidecar):
    splits = {s: hp_files[s] for s in ("train", "validation", "test")}
    overlaps = hps.split_overlaps(splits)
    assert len(overlaps["test&train"]) == 51 and len(overlaps["test&validation"]) == 7
    assert overlaps["train&validation"] == []
    known = hp_sidecar["longformer_split_caveats"]
    assert overlaps["test&train"] == known["overlaps"]["test&train"]
    assert overlaps["test&validation"] == known["overlaps"]["dev&test"]
    assert hps.ids_in_no_split(hp_files["all"], splits) == known["ids_in_no_split"]


def test_longformer_split_rebuilds_the_files_from_ids(hp_files):
    split_json = {"train": [int(i) for i in hp_files["train"]["id"].to_pylist()],
                  "dev": [int(i) for i in hp_files["validation"]["id"].to_pylist()],
                  "test": [int(i) for i in hp_files["test"]["id"].to_pylist()]}
    rebuilt = hps.longformer_split(hp_files["all"], split_json)
    for split in ("train", "validation", "test"):
        assert rebuilt[split].equals(hp_files[split].select(rebuilt[split].column_names))


def test_leak_free_split_of_the_645_articles(hp_files):
    splits = hps.leak_free_split(hp_files["all"], seed=0)
    assert {s: t.num_rows for s, t in splits.items()} == {"train": 516, "validation": 65, "test": 64}
    assert all(ids == [] for ids in hps.split_overlaps(splits).values())
    assert hps.ids_in_no_split(hp_files["all"], splits) == []


def test_tfidf_baseline_on_the_longformer_split(hyperpartisan):
    tables = hyperpartisan.tables
    result = tfidf_lr(tables["train"], tables["validation"], tables["test"], seed=0)
    assert result["test_f1_macro"] > 0.6 and result["val_f1_macro"] > 0.6
    assert result["train_time_s"] < 30
    assert result["peak_host_mem_mb"] > 0


def test_stats_agree_with_the_files(imdb, hyperpartisan, hp_files):
    stats = dataset_stats(imdb.tables, label_names=imdb.label_names)
    for split, table in imdb.tables.items():
        lengths = [len(t) for t in table["text"].to_pylist()]
        s = stats["splits"][split]
        assert s["documents"] == 25_000 and s["labels"] == {"neg": 12_500, "pos": 12_500}
        assert s["chars"]["mean"] == pytest.approx(np.mean(lengths)) and s["chars"]["max"] == max(lengths)
    assert round(stats["splits"]["train"]["chars"]["mean"]) == 1325   # the README's figures
    assert round(stats["splits"]["test"]["chars"]["mean"]) == 1294
    assert stats["total"]["documents"] == 50_000

    stats = dataset_stats(hyperpartisan.tables, tokenizer=str.split, max_len=512, label_names=["false", "true"])
    train = stats["splits"]["train"]
    assert train["labels"] == {"false": 329, "true": 187} and stats["total"]["documents"] == 645
    words = [len(t.split()) for t in hp_files["train"]["text"].to_pylist()]
    assert train["tokens"]["mean"] == pytest.approx(np.mean(words)) and train["tokens"]["max"] == 4431
    assert round(train["tokens"]["mean"]) == 566                       # "about 566 words", README
    assert train["tokens"]["truncated_share"] == pytest.approx(np.mean(np.array(words) > 512))
    table = format_stats(stats)
    assert "| train | 516 | false 329 (63.8%), true 187 (36.2%) |" in table


def test_wikipedia_sample_reads(shared_data):
    files = sorted(shared_data.glob("enwiki_sample_*.parquet"))
    assert [f.name for f in files] == ["enwiki_sample_00.parquet", "enwiki_sample_01.parquet"]
    shards = [pq.read_table(f, columns=["text"]) for f in files]
    assert [t.num_rows for t in shards] == [3221, 3293]
    wiki = pa.concat_tables(shards)
    assert wiki.num_rows == 6514 and wiki.schema.field("text").type == pa.string()
    assert "label" not in pq.read_schema(files[0]).names
    stats = dataset_stats({"wiki": wiki})
    assert stats["total"]["labels"] is None and stats["total"]["documents"] == 6514
    assert pc.sum(pc.equal(pc.utf8_length(wiki["text"]), 0)).as_py() == 4   # the README's 4 empty rows
