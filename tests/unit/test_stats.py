"""Dataset statistics on tables whose numbers can be checked by hand."""
import pyarrow as pa
import pytest

from raygrid.data.stats import dataset_stats, format_stats, length_summary

# train: lengths 1, 2, 3, 4, 10 (labels 0, 0, 0, 1, 1); test: lengths 5, 5 (labels 1, 1)
TRAIN = pa.table({"text": ["a", "bb", "ccc", "dddd", "e e e e e "], "label": pa.array([0, 0, 0, 1, 1], pa.int64())})
TEST = pa.table({"text": ["fffff", "g g g"], "label": pa.array([1, 1], pa.int64())})


def words(text):  # a callable tokenizer: one token per whitespace-separated word
    return text.split()


def test_length_summary_by_hand():
    # p95 of [1, 2, 3, 4, 10] with linear interpolation: 4 + 0.8 * (10 - 4) = 8.8
    assert length_summary([1, 2, 3, 4, 10]) == {"mean": 4.0, "median": 3.0, "p95": pytest.approx(8.8), "max": 10}
    assert length_summary([]) == {"mean": None, "median": None, "p95": None, "max": None}


def test_documents_labels_and_chars():
    stats = dataset_stats({"train": TRAIN, "test": TEST}, label_names=["neg", "pos"])
    train, test, total = stats["splits"]["train"], stats["splits"]["test"], stats["total"]
    assert train["documents"] == 5 and test["documents"] == 2 and total["documents"] == 7
    assert train["labels"] == {"neg": 3, "pos": 2} and train["label_share"] == {"neg": 0.6, "pos": 0.4}
    assert test["labels"] == {"neg": 0, "pos": 2}  # a class missing from a split is still listed
    assert total["labels"] == {"neg": 3, "pos": 4}
    assert train["chars"] == {"mean": 4.0, "median": 3.0, "p95": pytest.approx(8.8), "max": 10}
    assert total["chars"]["mean"] == pytest.approx(30 / 7) and total["chars"]["median"] == 4.0
    assert "tokens" not in train


def test_tokens_and_truncation_share():
    stats = dataset_stats({"train": TRAIN, "test": TEST}, tokenizer=words, max_len=3)
    tokens = stats["splits"]["train"]["tokens"]  # word counts 1, 1, 1, 1, 5
    assert tokens["mean"] == pytest.approx(1.8) and tokens["median"] == 1.0 and tokens["max"] == 5
    assert tokens["truncated_share"] == pytest.approx(0.2) and tokens["max_len"] == 3
    assert stats["splits"]["test"]["tokens"]["truncated_share"] == 0.0   # 1 and 3 words: 3 is not > 3
    assert stats["total"]["tokens"]["truncated_share"] == pytest.approx(1 / 7)
    assert stats["splits"]["train"]["labels"] == {"0": 3, "1": 2}       # no label names: values as strings


def test_hf_tokenizer_counts_special_tokens(tiny_checkpoint):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    table = pa.table({"text": ["the news", "the the the the the the"], "label": pa.array([0, 1], pa.int64())})
    tokens = dataset_stats({"train": table}, tokenizer=tokenizer, max_len=4)["splits"]["train"]["tokens"]
    assert tokens["max"] == 8 and tokens["mean"] == 6.0          # [CLS] + words + [SEP]: 4 and 8
    assert tokens["truncated_share"] == 0.5


def test_unlabelled_tables():
    stats = dataset_stats({"wiki": pa.table({"text": ["abc", "", None]})})
    assert stats["splits"]["wiki"]["labels"] is None and stats["splits"]["wiki"]["documents"] == 3
    assert stats["splits"]["wiki"]["chars"]["max"] == 3 and stats["total"] == stats["splits"]["wiki"]
    assert "(unlabelled)" in format_stats(stats)


def test_format_stats_markdown():
    text = format_stats(dataset_stats({"train": TRAIN, "test": TEST}, tokenizer=words, max_len=3,
                                      label_names=["neg", "pos"]), title="toy")
    lines = text.strip().splitlines()
    assert lines[0] == "### toy"
    assert lines[2].startswith("| split | documents | labels") and "truncated at 3" in lines[2]
    assert lines[3].startswith("| --- | ---: |")
    assert lines[4] == "| train | 5 | neg 3 (60.0%), pos 2 (40.0%) | 4 / 3 / 9 / 10 | 2 / 1 / 4 / 5 | 20.0% |"
    assert lines[6].startswith("| **total** | 7 |")
    assert all(line.count("|") == lines[2].count("|") for line in lines[2:])
