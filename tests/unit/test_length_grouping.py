"""Length-grouped batching: coverage, determinism per (seed, epoch), equal shards, less padding."""
import numpy as np
import pyarrow as pa
import pytest

from raygrid.data.batching import TokenRows, plan_batches
from raygrid.data.length_grouping import batches_per_epoch, epoch_batches, eval_batches, padding_ratio

# Skewed like real reviews and articles: many short documents, a long tail.
LENGTHS = np.random.default_rng(7).lognormal(5.0, 0.8, size=1003).astype(int).clip(8, 4096)


@pytest.mark.parametrize("grouped", [True, False])
def test_an_epoch_covers_every_document_exactly_once(grouped):
    batches = epoch_batches(LENGTHS, 16, seed=3, epoch=0, group_by_length=grouped)
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(len(LENGTHS)))
    assert len(batches) == batches_per_epoch(len(LENGTHS), 16) and all(len(b) <= 16 for b in batches)


def test_order_is_reproducible_per_seed_and_epoch_and_differs_between_epochs():
    first = epoch_batches(LENGTHS, 16, seed=3, epoch=1)
    again = epoch_batches(LENGTHS, 16, seed=3, epoch=1)  # what a resumed cell computes for epoch 1
    assert all(np.array_equal(a, b) for a, b in zip(first, again)) and len(first) == len(again)
    other_epoch = epoch_batches(LENGTHS, 16, seed=3, epoch=2)
    other_seed = epoch_batches(LENGTHS, 16, seed=4, epoch=1)
    assert not all(np.array_equal(a, b) for a, b in zip(first, other_epoch))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other_seed))


@pytest.mark.parametrize("world_size", [1, 2])
def test_shuffle_false_keeps_consecutive_rows_in_order_every_epoch(world_size):
    for epoch in (0, 1):
        ranks = [epoch_batches(LENGTHS, 16, seed=3, epoch=epoch, rank=r, world_size=world_size, shuffle=False)
                 for r in range(world_size)]
    # each global batch is consecutive rows; rank r holds its r-th slice
        merged = np.concatenate([np.concatenate(parts) for parts in zip(*ranks)])
        assert np.array_equal(merged[:len(LENGTHS)], np.arange(len(LENGTHS)))


def test_grouping_cuts_padding_and_starts_with_the_longest_batch():
    grouped = epoch_batches(LENGTHS, 16, seed=0, epoch=0)
    plain = epoch_batches(LENGTHS, 16, seed=0, epoch=0, group_by_length=False)
    waste, plain_waste = padding_ratio(LENGTHS, grouped) - 1, padding_ratio(LENGTHS, plain) - 1
    assert plain_waste > 1.0 and waste < 0.1 * plain_waste  # grouping removes > 90 % of the padding
    assert LENGTHS[grouped[0]].max() == LENGTHS.max()
    # batches are shuffled, not a length-sorted sweep: their longest rows do not decrease monotonically
    maxima = [LENGTHS[b].max() for b in grouped[1:]]
    assert any(a < b for a, b in zip(maxima, maxima[1:]))


def test_ranks_split_each_global_batch_into_equal_shares_of_similar_length():
    world = 3
    shards = [epoch_batches(LENGTHS, 8, seed=1, epoch=0, rank=r, world_size=world) for r in range(world)]
    assert len({len(s) for s in shards}) == 1  # every rank runs the same number of steps (DDP)
    assert len(shards[0]) == batches_per_epoch(len(LENGTHS), 8, world)
    rows = np.concatenate([np.concatenate(s) for s in shards])
    assert set(rows.tolist()) == set(range(len(LENGTHS)))  # all covered ...
    assert len(rows) - len(LENGTHS) == (-len(LENGTHS)) % world  # ... with only the wrap-around repeated
    # the same step on every rank: comparable longest documents (random batches: ~2x apart)
    spread = [max(LENGTHS[b].max() for b in step) / min(LENGTHS[b].max() for b in step) for step in zip(*shards)]
    assert np.median(spread) < 1.1 and np.quantile(spread, 0.9) < 1.2


def test_eval_batches_are_sorted_by_length_and_cover_each_row_once():
    batches = eval_batches(LENGTHS, 32)
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(len(LENGTHS)))
    assert all(np.diff(LENGTHS[rows]) <= 0)
    assert np.array_equal(np.concatenate(eval_batches(LENGTHS, 32, group_by_length=False)), np.arange(len(LENGTHS)))


def test_plan_batches_slice_rows_of_a_sliced_chunked_table():
    ids = [[i] * n for i, n in enumerate([3, 1, 5, 2, 4])]
    table = pa.concat_tables([pa.table({"input_ids": ids[:2], "label": [0, 1]}),
                              pa.table({"input_ids": ids[2:], "label": [0, 1, 0]})]).slice(1)
    rows = TokenRows.from_table(table)
    assert rows.lengths.tolist() == [1, 5, 2, 4] and rows.values.base is None  # an owned copy
    (batch,) = plan_batches(rows, [np.array([3, 0])], pad_token_id=-1)
    # rows 3 and 0 of the slice are documents 4 and 1
    assert batch["input_ids"][0, :4].tolist() == [4] * 4 and batch["input_ids"][1, :2].tolist() == [1, -1]
    assert batch["attention_mask"].sum(1).tolist() == [4, 1] and batch["labels"].tolist() == [0, 1]
