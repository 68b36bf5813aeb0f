"""The tokenized cache checks its files against meta.json; entries are group-readable; one-class data is refused."""
import stat
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from raygrid.spec.config import DataConfig
from raygrid.data.cache import prepare
from raygrid.data.sources import DataError
from tests.conftest import SAMPLE
from tests.unit.test_data import docs, write_split

CFG = DataConfig(dataset="hyperpartisan", path=str(SAMPLE), max_len=32, limit={"train": 12, "validation": 8, "test": 8})


def swap_in_other_rows(entry):
    """A valid Parquet file with other rows (test's) in place of train's, the same row count."""
    folder = Path(entry.folder)
    other = pq.read_table(folder / "test.parquet")
    pq.write_table(other.slice(0, entry.meta["files"]["train.parquet"]["rows"]), folder / "train.parquet")


def truncate(entry):
    path = Path(entry.folder) / "train.parquet"
    path.write_bytes(path.read_bytes()[:100])


def test_meta_records_rows_and_hash_of_every_file(tmp_path, tiny_checkpoint):
    entry = prepare(CFG, str(tiny_checkpoint), tmp_path, progress=False)
    files = entry.meta["files"]
    assert set(files) == {"train.parquet", "validation.parquet", "test.parquet"}
    assert files["train.parquet"]["rows"] == 12 and len(files["train.parquet"]["sha256"]) == 64


@pytest.mark.parametrize("damage", [swap_in_other_rows, truncate])
def test_a_damaged_local_entry_is_rebuilt_with_a_warning(tmp_path, tiny_checkpoint, damage):
    entry = prepare(CFG, str(tiny_checkpoint), tmp_path, progress=False)
    good = entry.read_split("train")
    damage(entry)
    with pytest.warns(UserWarning, match=r"damaged cache entry \(train.parquet"):
        again = prepare(CFG, str(tiny_checkpoint), tmp_path, progress=False)
    assert again.folder == entry.folder and again.read_split("train").equals(good)


def test_a_damaged_entry_on_shared_storage_is_refused_naming_it(tmp_path, tiny_checkpoint):
    root = f"file://{tmp_path}/shared"
    entry = prepare(CFG, str(tiny_checkpoint), root, progress=False)
    truncate(type(entry)(entry.folder.removeprefix("file://"), entry.meta))
    with pytest.raises(DataError) as err:
        prepare(CFG, str(tiny_checkpoint), root, progress=False)
    message = str(err.value)
    assert message.startswith(entry.folder) and "train.parquet is unreadable" in message
    assert "delete that folder to rebuild it" in message and "\n" not in message


def test_entries_are_readable_by_the_group(tmp_path, tiny_checkpoint):
    entry = prepare(CFG, str(tiny_checkpoint), tmp_path, progress=False)
    mode = Path(entry.folder).stat().st_mode
    assert mode & stat.S_IRGRP and mode & stat.S_IXGRP


@pytest.mark.parametrize("label", [0, 1])
def test_a_training_split_with_one_class_is_refused_naming_file_and_column(tmp_path, tiny_checkpoint, label):
    texts, _ = docs(12)
    for split in ("train", "validation", "test"):
        write_split(tmp_path / "d", split, texts, [label] * 12)
    cfg = DataConfig(dataset="local", path=str(tmp_path / "d"), max_len=32)
    with pytest.raises(DataError) as err:
        prepare(cfg, str(tiny_checkpoint), tmp_path / "cache", progress=False)
    assert str(err.value).startswith(str(tmp_path / "d" / "train.parquet"))
    assert "column 'label'" in str(err.value) and "1 class(es)" in str(err.value)
    assert not (tmp_path / "cache" / "tokenized").exists() or not any((tmp_path / "cache" / "tokenized").iterdir())


def test_one_class_left_after_the_limit_is_refused_too(tmp_path, tiny_checkpoint):
    texts, _ = docs(40)
    write_split(tmp_path / "d", "train", texts, [0] * 39 + [1])  # a stratified 4-row sample keeps class 0 only
    for split in ("validation", "test"):
        write_split(tmp_path / "d", split, texts[:8], [0, 1] * 4)
    cfg = DataConfig(dataset="local", path=str(tmp_path / "d"), max_len=32, limit={"train": 4})
    with pytest.raises(DataError, match=r"train.parquet \(after data.split/limit\): column 'label'"):
        prepare(cfg, str(tiny_checkpoint), tmp_path / "cache", progress=False)
