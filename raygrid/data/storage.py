"""Where cache entries live: a local folder or any filesystem pyarrow knows by URI (s3://, gs://, hdfs://, file://).

On a cluster the tokenized cache belongs on storage every node reads, e.g. `--cache-dir s3://bucket/raygrid`
or a shared mount. Entries are built in a local temporary folder and published at once: a local
entry by renaming the folder, a remote one by uploading its files with `meta.json` last, so a
reader that finds `meta.json` always finds the complete entry.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

META = "meta.json"


def is_uri(location: str) -> bool:
    return "://" in str(location)


def join(base: str, *parts: str) -> str:
    """Path join that keeps a URI's `scheme://` intact (pathlib would fold the double slash)."""
    if is_uri(base):
        return "/".join([str(base).rstrip("/"), *parts])
    return str(Path(base).joinpath(*parts))


def _resolve(location: str) -> tuple[pafs.FileSystem, str]:
    if is_uri(location):
        return pafs.FileSystem.from_uri(location)
    return pafs.LocalFileSystem(), str(Path(location).expanduser().resolve())


def filesystem_of(location: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and path of a location (Ray Data's readers take both)."""
    return _resolve(location)


def exists(location: str) -> bool:
    fs, path = _resolve(location)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def read_text(location: str) -> str:
    fs, path = _resolve(location)
    with fs.open_input_stream(path) as stream:
        return stream.read().decode()


def open_input(location: str):
    """A readable, seekable binary file (a context manager) at a local path or URI."""
    fs, path = _resolve(location)
    return fs.open_input_file(path)


def remove_dir(location: str) -> None:
    fs, path = _resolve(location)
    fs.delete_dir(path)


def read_parquet(location: str) -> pa.Table:
    fs, path = _resolve(location)
    return pq.read_table(path, filesystem=fs)


def publish(tmp: Path, folder: str) -> bool:
    """Make the finished entry in local folder `tmp` visible at `folder`; False if another writer won."""
    if not is_uri(folder):
        try:
            tmp.rename(folder)
            return True
        except OSError:  # another process finished the same entry first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
            return False
    fs, path = _resolve(folder)
    fs.create_dir(path, recursive=True)
    for file in sorted(tmp.iterdir(), key=lambda f: f.name == META):  # meta.json last: it marks completion
        pafs.copy_files(str(file), f"{path}/{file.name}", destination_filesystem=fs)
    shutil.rmtree(tmp, ignore_errors=True)
    return True
