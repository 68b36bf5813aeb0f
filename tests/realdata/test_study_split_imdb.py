"""The IMDB study split on the shared IMDB files equals an independent scikit-learn computation, row for row."""
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from raygrid.data.sources import load_raw
from raygrid.data.splits import apply_split_policy, route, split_rows
from raygrid.spec.config import DataConfig

pytestmark = pytest.mark.realdata


def test_imdb_study_split_row_for_row(shared_data):
    train, test = (pd.read_parquet(shared_data / f"imdb_{part}.parquet") for part in ("train", "test"))
    # the study's notebook: HF test then train, 0.2 stratified, then the rest halved: first part test
    merged = pd.concat([test, train], ignore_index=True)
    kept, rest = train_test_split(merged, test_size=0.2, random_state=42, stratify=merged["label"])
    test_part, validation_part = train_test_split(rest, test_size=0.5, random_state=42, stratify=rest["label"])
    expected = {"train": kept, "validation": validation_part, "test": test_part}

    cfg = DataConfig(dataset="imdb", path=str(shared_data), split="study")
    rows = split_rows(route({"train": train["label"].to_numpy(), "test": test["label"].to_numpy()}, cfg))
    ids = {"train": train["id"].to_numpy(), "test": test["id"].to_numpy()}
    for split, frame in expected.items():
        ours = sorted(id_ for part, picked in rows[split].items() for id_ in ids[part][picked])
        assert ours == sorted(frame["id"]), split  # the same reviews (ids are unique across both files)
    assert {split: len(frame) for split, frame in expected.items()} == {"train": 40_000, "validation": 5_000,
                                                                      "test": 5_000}
    tables = apply_split_policy(load_raw(cfg), cfg)  # the path TF-IDF and `data stats` take: the same texts
    for split, frame in expected.items():
        assert sorted(tables[split]["text"].to_pylist()) == sorted(frame["text"]), split
