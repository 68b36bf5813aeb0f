"""MLM sequences: the study's corpus rule and document layout with short first rows, task MLM per document."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from raygrid.data.corpus import first_words, study_selects
from raygrid.data.mlm_data import prepare_mlm
from raygrid.data.mlm_sinks import cut_rows
from raygrid.spec.config import CellConfig, DataConfig
from tests.conftest import SAMPLE

TOPICAL = "the government said the election and the law " * 120  # 3 keywords, 1,080 words
PLAIN = "the news of the president said " * 120  # none of the keywords


def write_corpus(folder, docs_per_shard=30, shards=2):
    folder.mkdir(parents=True, exist_ok=True)
    for shard in range(shards):
        texts = [f"doc {shard}-{i} " + (TOPICAL if i % 3 else PLAIN) for i in range(docs_per_shard)]
        pq.write_table(pa.table({"text": texts}), folder / f"wiki_{shard}.parquet")
    return folder


def test_the_study_rule_keeps_three_distinct_keywords_and_600_words():
    assert study_selects("Film, films and the FILM-maker's award at the Academy")  # film award academy
    assert not study_selects("film film film movie movie")  # two distinct keywords
    assert not study_selects("Filmography of awarded academics")  # whole [a-z]+ words only
    assert first_words(" a\tb\n\nc  d ", 3) == "a b c" and len(first_words(TOPICAL).split()) == 600


def test_document_layout_with_short_rows_and_no_validation(tmp_path, tiny_checkpoint):
    cfg = DataConfig(dataset="wikipedia", path=str(write_corpus(tmp_path / "wiki")), corpus_rule="study",
                     mlm_layout="document", limit={"train": 25}, val_fraction=0, short_rows=15, short_len=16,
                     max_len=64)
    entry = prepare_mlm(cfg, str(tiny_checkpoint), tmp_path / "cache", progress=False)
    assert entry.splits == ["train"] and not (tmp_path / "cache" / "validation.parquet").exists()
    rows = entry.read_split("train")
    lengths = rows["n_tokens"].to_numpy()
    assert rows.num_rows == 25 and list(lengths) == [16] * 15 + [64] * 10  # every kept article is long
    ids = rows["input_ids"].to_pylist()
    assert all(r[0] == 2 and r[-1] == 3 for r in ids)  # [CLS] ... [SEP], also where cut to 16
    # 2 of every 3 documents carry the keywords: the 25th kept one is source row 37 of shard 0
    assert entry.meta["source_rows_read"] == 38 and entry.meta["source_shards_read"] == 2
    assert entry.meta["layout"] == "document" and entry.meta["splits"]["train"]["cut_to_short_len"] == 15


def test_task_mlm_takes_train_and_validation_documents_one_sequence_each(tmp_path, tiny_checkpoint):
    cfg = DataConfig(dataset="hyperpartisan", path=str(SAMPLE), max_len=512, mlm_layout="document",
                     limit={"train": 20, "validation": 8})
    entry = prepare_mlm(cfg, str(tiny_checkpoint), tmp_path, progress=False)
    assert entry.splits == ["train", "validation"]  # never the test documents
    assert {s: entry.meta["splits"][s]["rows"] for s in entry.splits} == {"train": 20, "validation": 8}
    lengths = entry.read_split("train")["n_tokens"].to_numpy()
    assert lengths.max() == 512 and len(set(lengths)) > 1  # one sequence per document, cut at max_len
    packed = prepare_mlm(cfg.model_copy(update={"mlm_layout": "packed"}), str(tiny_checkpoint), tmp_path,
                         progress=False)
    assert packed.folder != entry.folder and set(packed.read_split("train")["n_tokens"].to_pylist()) == {512}


def test_cut_rows_cuts_only_the_first_long_rows():
    table = pa.table({"input_ids": pa.array([[2, 5, 6, 7, 3], [2, 5, 3], [2, 5, 6, 7, 8, 3], [2, 9, 9, 9, 3]],
                                            pa.list_(pa.int32())),
                      "n_tokens": pa.array([5, 3, 6, 5], pa.int32())})
    cut = cut_rows(table.slice(0), 3, 4, 3)
    assert cut["input_ids"].to_pylist() == [[2, 5, 6, 3], [2, 5, 3], [2, 5, 6, 3], [2, 9, 9, 9, 3]]
    assert cut["n_tokens"].to_pylist() == [4, 3, 4, 5]
    sliced = cut_rows(table.slice(2), 1, 4, 3)  # a slice of a larger table: offsets do not start at 0
    assert sliced["input_ids"].to_pylist() == [[2, 5, 6, 3], [2, 9, 9, 9, 3]]


def test_mlm_only_settings_are_refused_elsewhere():
    with pytest.raises(ValidationError, match="corpus_rule: study selects corpus articles; imdb is a task"):
        DataConfig(dataset="imdb", corpus_rule="study")
    with pytest.raises(ValidationError, match="short_rows: cutting the first sequences needs mlm_layout: document"):
        DataConfig(dataset="wikipedia", short_rows=10)
    with pytest.raises(ValidationError, match="short_len: 512 must be below max_len 512"):
        DataConfig(dataset="wikipedia", mlm_layout="document", short_rows=10, short_len=512)
    with pytest.raises(ValidationError, match="a finetune cell reads whole documents"):
        CellConfig.model_validate({"data": {"dataset": "imdb", "mlm_layout": "document"},
                                   "model": {"checkpoint": "x"}})
    with pytest.raises(ValidationError, match="study_sizes: only the Hyperpartisan by-publisher study split"):
        DataConfig(dataset="imdb", split="study", study_sizes={"train": 10, "heldout": 4})
    assert np.isclose(DataConfig(dataset="wikipedia", val_fraction=0).val_fraction, 0)
