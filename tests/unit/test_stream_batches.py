"""Streamed batching: every row once per epoch, deterministic per (seed, epoch), bounded windows."""
import numpy as np
import pyarrow as pa
import pytest

from raygrid.data import stream_batches
from raygrid.data.stream_batches import eval_batches, padding_ratio, train_batches, windows

# Skewed like real reviews and articles: many short documents, a long tail.
LENGTHS = np.random.default_rng(7).lognormal(5.0, 0.8, size=1003).astype(int).clip(8, 2048)


def table(lengths=LENGTHS, labels=True) -> pa.Table:
    """Row i holds the token ids [i, i, ...] (len lengths[i]), so a batch says which rows it took."""
    columns = {"input_ids": pa.array([np.full(n, i, dtype=np.int32) for i, n in enumerate(lengths)],
                                     type=pa.list_(pa.int32()))}
    if labels:
        columns["label"] = pa.array(np.arange(len(lengths)) % 2)
    return pa.table(columns)


def stream(tab: pa.Table, chunk: int = 37):
    """The table as record batches of an awkward size (windows never align with them)."""
    return iter(tab.to_batches(max_chunksize=chunk))


def rows_of(batches) -> list[list[int]]:
    return [[int(row[0]) for row in batch["input_ids"]] for batch in batches]


@pytest.mark.parametrize("grouped", [True, False])
def test_an_epoch_takes_every_row_exactly_once_with_its_label(grouped):
    batches = list(train_batches(stream(table()), 16, seed=3, epoch=0, group_by_length=grouped, window_batches=5))
    rows = [r for b in rows_of(batches) for r in b]
    assert sorted(rows) == list(range(len(LENGTHS)))
    assert len(batches) == -(-len(LENGTHS) // 16) and all(len(b["input_ids"]) <= 16 for b in batches)
    for batch in batches:
        ids = [int(r[0]) for r in batch["input_ids"]]
        assert batch["label"].tolist() == [i % 2 for i in ids]
        assert [len(r) for r in batch["input_ids"]] == LENGTHS[ids].tolist()


def test_order_is_reproducible_per_seed_and_epoch_and_differs_between_epochs_and_seeds():
    def run(seed, epoch, chunk=37):
        return rows_of(train_batches(stream(table(), chunk), 16, seed, epoch, window_batches=5))
    first = run(3, 1)
    assert first == run(3, 1)  # what a resumed cell computes for epoch 1
    assert first == run(3, 1, chunk=250)  # the same shard content read in other Arrow batch sizes
    assert first != run(3, 2) and first != run(4, 1)


def test_rows_stay_in_their_window_and_windows_group_by_length():
    batches = rows_of(train_batches(stream(table()), 16, seed=0, epoch=0, window_batches=5))
    for w in range(0, len(batches), 5):  # window w holds rows [80 w, 80 (w + 1)) of the stream
        rows = sorted(r for b in batches[w:w + 5] for r in b)
        assert rows == list(range(16 * w, min(16 * (w + 5), len(LENGTHS))))
    grouped, plain = ([np.array(b) for b in rows_of(train_batches(stream(table()), 16, 0, 0, group_by_length=g))]
                      for g in (True, False))  # the default window: 50 batches
    assert padding_ratio(LENGTHS, grouped) < 1.2 and padding_ratio(LENGTHS, plain) > 2


def test_windows_hold_one_window_at_most(monkeypatch):
    cut = list(windows(stream(table(), chunk=37), 80))
    assert [w.num_rows for w in cut] == [80] * 12 + [43]
    assert [int(r[0]) for w in cut for r in w["input_ids"].to_pylist()] == list(range(len(LENGTHS)))
    sizes = []
    real = stream_batches.windows

    def watched(source, rows):  # the batcher asks for windows of window_batches x batch_size rows
        sizes.append(rows)
        return real(source, rows)
    monkeypatch.setattr(stream_batches, "windows", watched)
    list(train_batches(stream(table()), 16, 0, 0, window_batches=5))
    assert sizes == [80]


def test_equal_shards_give_every_rank_the_same_number_of_batches():
    shards = [table().slice(r * 334, 334) for r in range(3)]
    counts = {len(list(train_batches(stream(s), 16, 0, 0, window_batches=4))) for s in shards}
    assert counts == {-(-334 // 16)}


def test_shuffle_false_keeps_consecutive_rows_in_order():
    for epoch in (0, 1):
        batches = rows_of(train_batches(stream(table()), 16, seed=3, epoch=epoch, shuffle=False))
        assert batches == [list(range(i, min(i + 16, len(LENGTHS)))) for i in range(0, len(LENGTHS), 16)]


def test_mlm_rows_without_labels_batch_too():
    batches = list(train_batches(stream(table(labels=False)), 16, seed=0, epoch=0))
    assert "label" not in batches[0] and sum(len(b["input_ids"]) for b in batches) == len(LENGTHS)


@pytest.mark.parametrize("grouped", [True, False])
def test_evaluation_covers_each_row_once_sorted_within_windows(grouped):
    batches = rows_of(eval_batches(stream(table()), 32, group_by_length=grouped, window_batches=4))
    rows = [r for b in batches for r in b]
    assert sorted(rows) == list(range(len(LENGTHS)))
    if not grouped:
        assert rows == list(range(len(LENGTHS)))
        return
    for w in range(0, len(rows), 128):
        window = LENGTHS[rows[w:w + 128]]
        assert (np.diff(window) <= 0).all()  # longest first within the window


@pytest.mark.parametrize("grouped, shuffle", [(True, True), (False, True), (True, False)])
def test_the_plan_of_lengths_is_the_plan_the_stream_runs(grouped, shuffle):
    plan = stream_batches.epoch_plan(LENGTHS, 16, seed=5, epoch=2, group_by_length=grouped, shuffle=shuffle)
    ran = rows_of(train_batches(stream(table()), 16, 5, 2, group_by_length=grouped, shuffle=shuffle,
                                total_rows=len(LENGTHS)))
    assert [b.tolist() for b in plan] == ran


def test_a_known_length_is_cut_into_even_windows_of_whole_batches():
    assert stream_batches.window_rows(8, 50, 516) == 520  # one window, not 400 + 116
    assert stream_batches.window_rows(64, 50, 22_500) == 3264  # 7 windows, the last shorter
    assert stream_batches.window_rows(8, 50, None) == 400
    batches = rows_of(train_batches(stream(table()), 16, 0, 0, total_rows=len(LENGTHS)))
    assert len(batches) == -(-len(LENGTHS) // 16) and sorted(r for b in batches for r in b) == list(range(1003))


def test_padding_ratio_counts_each_batch_padded_to_its_longest_row_rounded_to_8():
    lengths = np.array([10, 3, 16, 16])
    assert padding_ratio(lengths, [np.array([0, 1]), np.array([2, 3])]) == (2 * 16 + 2 * 16) / 45


def rank_rows(world, seed=3, epoch=1, chunk=37, **kw):
    return [rows_of(train_batches(stream(table(), chunk), 16, seed, epoch, total_rows=len(LENGTHS), rank=r,
                                  world_size=world, **kw)) for r in range(world)]


@pytest.mark.parametrize("world", [2, 3, 4])
@pytest.mark.parametrize("shuffle", [True, False])
def test_ranks_share_every_window_equally_and_together_take_every_row_once(world, shuffle):
    ranks = rank_rows(world, shuffle=shuffle)
    counts = {len(batches) for batches in ranks}
    assert counts == {stream_batches.rank_batches(len(LENGTHS), 16, world, shuffle)}  # the same steps on every rank
    taken = sorted(r for batches in ranks for b in batches for r in b)
    assert len(set(taken)) == len(taken) and len(LENGTHS) - len(taken) < world  # at most world - 1 left out
    assert all(0 < len(b) <= 16 for batches in ranks for b in batches)
    if not shuffle:  # consecutive rows dealt round-robin: rank r takes rows [16 (r + k world), ...)
        assert ranks[1][0] == list(range(16, 32)) and ranks[0][1] == list(range(16 * world, 16 * world + 16))


def test_a_ranks_batches_depend_on_seed_and_epoch_only():
    first = rank_rows(4)
    assert first == rank_rows(4, chunk=250)  # however the stream's Arrow batches are cut
    assert first != rank_rows(4, epoch=2) and first != rank_rows(4, seed=4)


def test_several_ranks_pad_no_more_than_one_worker_with_their_batch_size():
    one = stream_batches.epoch_plan(LENGTHS, 4, 0, 0)
    four = stream_batches.epoch_plan(LENGTHS, 4, 0, 0, rank=None, world_size=4)
    shard_alone = stream_batches.epoch_plan(LENGTHS[:len(LENGTHS) // 4], 4, 0, 0)  # what a rank sorting its own rows gets
    assert padding_ratio(LENGTHS, four) < padding_ratio(LENGTHS[:len(LENGTHS) // 4], shard_alone)
    assert padding_ratio(LENGTHS, four) <= padding_ratio(LENGTHS, one) + 0.005


def test_every_ranks_first_batch_is_one_of_the_longest():
    plan = stream_batches.epoch_plan(LENGTHS, 16, 0, 0, rank=None, world_size=4)
    tops = sorted((int(LENGTHS[b].max()) for b in plan), reverse=True)[:4]
    assert sorted(int(LENGTHS[b].max()) for b in plan[:4]) == sorted(tops)


@pytest.mark.parametrize("rows, batch, world", [(1, 8, 2), (7, 4, 4), (33, 4, 4), (516, 8, 4), (22_500, 64, 8)])
def test_rank_batches_counts_what_the_plan_deals(rows, batch, world):
    lengths = np.arange(rows) % 97 + 1
    for shuffle in (True, False):
        plan = stream_batches.epoch_plan(lengths, batch, 0, 0, shuffle=shuffle, rank=None, world_size=world)
        assert len(plan) == world * stream_batches.rank_batches(rows, batch, world, shuffle)
