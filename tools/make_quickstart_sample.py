"""Rebuild raygrid/resources/hyperpartisan_sample from the full by-article Hyperpartisan data.

Usage: python tools/make_quickstart_sample.py ../shared/data/hyperpartisan_byarticle_all.parquet
Draws a stratified, seeded, leak-free train/validation/test sample (disjoint article ids) from
the 645-article by-article training set, small enough for the 5-minute CPU quickstart.
"""
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

SIZES = {"train": 96, "validation": 32, "test": 32}
OUT = Path(__file__).resolve().parents[1] / "raygrid" / "resources" / "hyperpartisan_sample"


def main(source: str) -> None:
    table = pq.read_table(source, columns=["text", "label", "id"])
    labels = table["label"].to_numpy()
    rng = np.random.default_rng(0)
    share = labels.mean()
    pools = {label: list(rng.permutation(np.flatnonzero(labels == label))) for label in (0, 1)}
    for split, size in SIZES.items():
        n_pos = int(round(size * share))
        rows = sorted(pools[1][:n_pos] + pools[0][: size - n_pos])
        pools[1], pools[0] = pools[1][n_pos:], pools[0][size - n_pos:]
        pq.write_table(table.take(rows), OUT / f"hyperpartisan_{split}.parquet", compression="zstd")
    (OUT / "dataset.json").write_text(json.dumps({"label_names": ["false", "true"], "sizes": SIZES}, indent=2))


if __name__ == "__main__":
    main(sys.argv[1])
