"""`raygrid bench attention --favor-memory`: the chunked FAVOR+ kernel against the dense formula."""
from raygrid.bench import favor_memory


def test_rows_compare_the_same_outputs_and_chunked_needs_less_memory():
    rows = favor_memory.run([1024], [256], heads=2, head_dim=16, repeats=1)
    (row,) = rows
    assert row["max_abs_diff"] < 1e-4  # the same attention, summed in another order
    assert row["chunked_mib"] < row["dense_mib"]  # no (B, H, N, M) feature tensors kept for backward
    text = favor_memory.render(rows, "cpu", 2, 16)
    assert "| 1,024 | 256 |" in text and text.count("\n") == 5  # header, blank, 2 table heads, 1 row
