"""Where tokenized MLM documents go: one sequence each (`document`) or packed into blocks (`packed`).

Both take tables of tokenized documents with an int8 `split` column (0 train, 1 validation) in
source order and hand rows to raygrid.data.cache_writer.SplitFiles. Anything that depends on a
row's position in its split (the study's short first sequences, packing across documents, the
seeded shuffle of each group of blocks) happens here, sequentially, so the in-process and the
Ray Data tokenization write the same rows.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from raygrid.data.cache_writer import SplitFiles
from raygrid.data.mlm_text import BlockPacker
from raygrid.data.tokenize import list_array


class DocumentSink:
    """One sequence per document; the first `short_rows` training sequences cut to `short_len` ([SEP] last)."""

    def __init__(self, files: SplitFiles, names: tuple[str, ...], short_rows: int, short_len: int, sep_id: int):
        self.files, self.names = files, names
        self.short_left, self.short_len, self.sep_id = short_rows, short_len, sep_id
        self.documents = {name: 0 for name in files.writers}
        self.cut = 0

    def add(self, table: pa.Table) -> None:
        for index, rows in _by_split(table):
            name = self.names[index]
            if name == "train" and self.short_left:
                head = min(self.short_left, rows.num_rows)
                self.cut += int((rows["n_tokens"].to_numpy()[:head] > self.short_len).sum())
                rows = cut_rows(rows, head, self.short_len, self.sep_id)
                self.short_left -= head
            self.files.add(name, rows)
            self.documents[name] += rows.num_rows

    def close(self) -> dict[str, dict]:
        stats = self.files.close()
        for name, count in self.documents.items():
            stats[name]["documents"] = count
        if "train" in stats:
            stats["train"]["cut_to_short_len"] = self.cut
        return stats


class PackedSink:
    """Documents concatenated per split (separated by [SEP]) and cut into full blocks, each group shuffled.

    Shuffling inside row groups of 2,048 blocks mixes neighbouring articles, so a training batch is
    not a run of consecutive chunks of one article (Ray's local shuffle buffer is only a few
    batches wide); memory stays bounded.
    """

    GROUP_ROWS = 2048

    def __init__(self, files: SplitFiles, names: tuple[str, ...], block_len: int, tokenizer, rng: np.random.Generator):
        self.files, self.names, self.block_len, self.rng = files, names, block_len, rng
        self.packers = {name: BlockPacker(block_len, tokenizer.cls_token_id, tokenizer.sep_token_id)
                        for name in files.writers}
        self.pending: dict[str, list[np.ndarray]] = {name: [] for name in files.writers}
        self.documents = {name: 0 for name in files.writers}

    def add(self, table: pa.Table) -> None:
        for index, rows in _by_split(table):
            name = self.names[index]
            for ids in rows["input_ids"].to_numpy(zero_copy_only=False):
                self.pending[name].extend(self.packers[name].add(ids.tolist()))
                self.documents[name] += 1
                if len(self.pending[name]) >= self.GROUP_ROWS:
                    self._flush(name)

    def _flush(self, name: str) -> None:
        blocks = [self.pending[name][i] for i in self.rng.permutation(len(self.pending[name]))]
        if blocks:
            self.files.add(name, pa.table({"input_ids": list_array(blocks),
                                           "n_tokens": pa.array([self.block_len] * len(blocks), pa.int32())}))
        self.pending[name] = []

    def close(self) -> dict[str, dict]:
        for name in self.pending:
            self._flush(name)
        stats = self.files.close()
        for name, count in self.documents.items():
            stats[name]["documents"] = count
        return stats


def _by_split(table: pa.Table):
    """(split index, rows of that split) in split order; a table of one split is passed whole."""
    ids = table["split"].to_numpy()
    present = np.unique(ids)
    for index in present:
        yield int(index), table if len(present) == 1 else table.filter(pa.array(ids == index))


def cut_rows(table: pa.Table, count: int, length: int, last_id: int) -> pa.Table:
    """The first `count` rows longer than `length` cut to `length` ids, the last one `last_id`; others unchanged."""
    ids = table["input_ids"].combine_chunks()
    offsets = ids.offsets.to_numpy()
    values = ids.flatten().to_numpy()  # this slice's ids only
    lengths = np.diff(offsets)
    offsets = offsets - offsets[0]
    new = lengths.copy()
    cut = np.zeros(len(lengths), bool)
    cut[:count] = lengths[:count] > length
    new[cut] = length
    position = np.arange(len(values)) - np.repeat(offsets[:-1], lengths)  # each id's place in its row
    kept = values[position < np.repeat(new, lengths)]
    ends = np.cumsum(new)
    kept[ends[cut] - 1] = last_id
    starts = np.concatenate([[0], ends]).astype(np.int32)
    out = table.set_column(table.column_names.index("input_ids"), "input_ids",
                           pa.ListArray.from_arrays(pa.array(starts), pa.array(kept, pa.int32())))
    return out.set_column(out.column_names.index("n_tokens"), "n_tokens", pa.array(new.astype(np.int32)))
