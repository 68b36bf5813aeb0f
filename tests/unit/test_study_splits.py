"""`data.split: study`: the study's exact split rules, checked against independent pandas / scikit-learn code.

The independent side follows the study's notebooks (Bartekb3/fromscratch-transformer-classifier,
research/tokenization/*.ipynb) step by step on whole DataFrames with the texts, as the study ran
them; raygrid computes the same rules on labels only and streams the texts afterwards.
"""
import random
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.model_selection import train_test_split

from raygrid.data.cache import prepare
from raygrid.data.raw import DataError
from raygrid.data.sources import load_raw
from raygrid.data.splits import apply_split_policy
from raygrid.spec.config import DataConfig

# --- IMDB and ArXiv: concatenation order and which half is validation ---------------------------


def write_parts(folder: Path, prefix: str, sizes: dict[str, int], classes: int) -> dict[str, pd.DataFrame]:
    frames = {}
    for part, n in sizes.items():
        rng = np.random.default_rng(len(part) * 7 + n)
        labels = rng.integers(0, classes, n)
        texts = [f"{part} doc {i} <br /><br />words {'x ' * int(rng.integers(1, 9))}" for i in range(n)]
        frames[part] = pd.DataFrame({"text": texts, "label": labels.astype("int64")})
        pq.write_table(pa.Table.from_pandas(frames[part], preserve_index=False), folder / f"{prefix}_{part}.parquet")
    return frames


def notebook_split(frames, order, rest_first):
    """The study's notebook: concatenate, train_test_split(0.2, 42, stratified), then 0.5 of the rest."""
    df = pd.concat([frames[part] for part in order], ignore_index=True)
    train, rest = train_test_split(df, test_size=0.2, random_state=42, stratify=df["label"])
    first, second = train_test_split(rest, test_size=0.5, random_state=42, stratify=rest["label"])
    other = "validation" if rest_first == "test" else "test"
    return {"train": train, rest_first: first, other: second}


@pytest.mark.parametrize("dataset, order, rest_first, classes", [
    ("imdb", ("test", "train"), "test", 2),                          # IMDB: first half of the rest = test
    ("arxiv", ("test", "train", "validation"), "validation", 11),    # ArXiv: first half = validation
])
def test_two_step_rule_equals_the_notebook(tmp_path, dataset, order, rest_first, classes):
    sizes = {"train": 300, "test": 220} if dataset == "imdb" else {"train": 400, "validation": 90, "test": 110}
    frames = write_parts(tmp_path, dataset, sizes, classes)
    cfg = DataConfig(dataset=dataset, path=str(tmp_path), split="study")
    ours = apply_split_policy(load_raw(cfg), cfg)
    theirs = notebook_split(frames, order, rest_first)
    for split in ("train", "validation", "test"):
        assert sorted(ours[split]["text"].to_pylist()) == sorted(theirs[split]["text"]), split
        assert ours[split].num_rows == len(theirs[split])
    resplit = cfg.model_copy(update={"split": "resplit"})  # the merged 80/10/10 re-split is another rule
    assert sorted(apply_split_policy(load_raw(resplit), resplit)["test"]["text"].to_pylist()) != \
        sorted(ours["test"]["text"].to_pylist())


def test_imdb_study_text_drops_br_tags_as_the_notebook(tmp_path):
    frames = write_parts(tmp_path, "imdb", {"train": 40, "test": 40}, 2)
    cfg = DataConfig(dataset="imdb", path=str(tmp_path), split="study", text_rule="study")
    ours = apply_split_policy(load_raw(cfg), cfg)
    theirs = notebook_split(frames, ("test", "train"), "test")
    expected = theirs["validation"]["text"].str.replace(r"<br\s*/?>", "", regex=True)
    assert sorted(ours["validation"]["text"].to_pylist()) == sorted(expected)
    assert not any("<br" in text for text in ours["train"]["text"].to_pylist())


def test_study_needs_the_parts_its_rule_concatenates(tmp_path):
    write_parts(tmp_path, "arxiv", {"train": 50, "test": 20}, 2)
    cfg = DataConfig(dataset="arxiv", path=str(tmp_path), split="study")
    with pytest.raises(DataError, match="arxiv needs its shipped test, train, validation splits; validation not found"):
        apply_split_policy(load_raw(cfg), cfg)


# --- Hyperpartisan by-publisher: two files, publishers apart, balanced, resized -----------------

TRAIN_PUBLISHERS = {"left-wire.example": "true", "right-daily.example": "true", "calm-times.example": "false",
                    "plain-post.example": "false", "civic-ledger.example": "false"}
HELDOUT_PUBLISHERS = {"loud-voice.example": "true", "quiet-paper.example": "false", "fair-report.example": "false"}
SIZES = {"train": 12, "heldout": 8}  # the study's 52,000 / 13,000, small


def craft(folder: Path, part: str, publishers: dict, n: int, seed: int) -> dict[str, str]:
    """articles-/ground-truth-<part>-bypublisher XML pair; returns the publisher of each article id."""
    rng = random.Random(seed)
    articles, truth, publisher_of = [], [], {}
    for i in range(n):
        article_id = f"{seed:02d}{i:05d}"
        publisher = rng.choice(sorted(publishers))
        publisher_of[article_id] = publisher
        paragraphs = rng.randint(5, 9) if rng.random() < 0.8 else 1  # ~20 % stay below 7,000 characters
        body = "".join(f"<p>Article {article_id} paragraph {k}: " + "words of the news " * 80 + "</p>\n"
                       for k in range(paragraphs))
        # the study keeps a paragraph's .text only: the words after the link are not part of its text
        body += f'<p>Lead {article_id} <a href="https://{publisher}/x">a link</a> after the link</p><p>   </p>'
        articles.append(f'<article id="{article_id}" title="t{i}">{body}</article>')
        truth.append(f"<article id='{article_id}' hyperpartisan='{publishers[publisher]}' "
                     f"url='https://{publisher}/{i}'/>")
    stem = f"{part}-bypublisher-20181122.xml"
    (folder / f"articles-{stem}").write_text("<articles>\n" + "\n".join(articles) + "\n</articles>")
    (folder / f"ground-truth-{stem}").write_text("<articles>\n" + "\n".join(truth) + "\n</articles>")
    return publisher_of


def notebook_frame(folder: Path, part: str) -> pd.DataFrame:
    """The study's convert_xml_to_csv_streamed + add_classes_to_csv, on a whole parsed tree."""
    stem = f"{part}-bypublisher-20181122.xml"
    classes = {a.get("id"): a.get("hyperpartisan") == "true" for a in ET.parse(folder / f"ground-truth-{stem}").getroot()}
    rows = []
    for article in ET.parse(folder / f"articles-{stem}").getroot():
        text = " ".join(child.text.strip() for child in article if child.tag == "p" and child.text)
        if len(text) >= 7000:
            rows.append({"article_id": article.get("id"), "text": text, "class": classes[article.get("id")]})
    return pd.DataFrame(rows)


def downsample_majority(df, seed=42):
    df_0, df_1 = df[df["class"] == 0], df[df["class"] == 1]
    majority, minority = (df_0, df_1) if len(df_0) > len(df_1) else (df_1, df_0)
    sampled = majority.sample(n=len(minority), random_state=seed)
    return pd.concat([minority, sampled]).sample(frac=1, random_state=seed).reset_index(drop=True)


def resize_balanced(df, target_size, seed=42):
    half = target_size // 2
    parts = [df[df["class"] == c].sample(n=half, random_state=seed) for c in (0, 1)]
    return pd.concat(parts).sample(frac=1, random_state=seed).reset_index(drop=True)


@pytest.fixture(scope="module")
def crafted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bypublisher")
    publishers = {**craft(folder, "training", TRAIN_PUBLISHERS, 60, 1),
                  **craft(folder, "validation", HELDOUT_PUBLISHERS, 40, 2)}
    train = resize_balanced(downsample_majority(notebook_frame(folder, "training")), SIZES["train"])
    held = resize_balanced(downsample_majority(notebook_frame(folder, "validation")), SIZES["heldout"])
    held["class"] = held["class"].map({True: 1, False: 0})
    validation, test = train_test_split(held, test_size=0.5, random_state=42, stratify=held["class"])
    return folder, publishers, {"train": train, "validation": validation, "test": test}


def bypublisher_cfg(folder, **extra):
    return DataConfig(dataset="hyperpartisan", subset="bypublisher", split="study", text_rule="study",
                      path=str(folder), study_sizes=SIZES, **extra)


def test_bypublisher_study_rule_equals_the_notebook_on_crafted_archives(crafted):
    folder, publishers, theirs = crafted
    ours = apply_split_policy(load_raw(bypublisher_cfg(folder)), bypublisher_cfg(folder))
    assert {s: t.num_rows for s, t in ours.items()} == {"train": 12, "validation": 4, "test": 4}  # sizes exact
    for split, table in ours.items():
        assert sorted(table["text"].to_pylist()) == sorted(theirs[split]["text"]), split
        labels = table["label"].to_numpy()
        assert (labels == 0).sum() == (labels == 1).sum(), split  # balanced
        assert all(len(text) >= 7000 and "after the link" not in text for text in table["text"].to_pylist())

    def publisher_set(split):
        return {publishers[text.split()[1]] for text in ours[split]["text"].to_pylist()}  # "Article <id> ..."

    assert publisher_set("train") <= set(TRAIN_PUBLISHERS)
    assert publisher_set("validation") | publisher_set("test") <= set(HELDOUT_PUBLISHERS)  # publishers apart


def test_bypublisher_study_rule_through_the_cache(crafted, tiny_checkpoint, tmp_path):
    folder, _, _ = crafted
    entry = prepare(bypublisher_cfg(folder, max_len=64), str(tiny_checkpoint), tmp_path, progress=False)
    assert {s: (v["rows"], v["label_counts"]) for s, v in entry.meta["splits"].items()} == \
        {"train": (12, {"0": 6, "1": 6}), "validation": (4, {"0": 2, "1": 2}), "test": (4, {"0": 2, "1": 2})}
    assert entry.meta["leaks"] == {}  # different publishers: no shared article


def test_bypublisher_too_few_articles_for_the_sizes_is_one_clear_line(crafted):
    folder, _, _ = crafted
    cfg = DataConfig.model_validate({**bypublisher_cfg(folder).model_dump(), "study_sizes": {"train": 12, "heldout": 400}})
    with pytest.raises(DataError, match=r"the by-publisher validation file keeps \d+ articles of class 0 and \d+ "
                                        r"of class 1; balancing to 400 rows needs 200 of each \(data.study_sizes\)"):
        apply_split_policy(load_raw(cfg), cfg)
