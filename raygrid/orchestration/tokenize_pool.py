"""Tokenizing missing cache entries on a Ray Data actor pool (`--tokenize-actors N`, `data prepare --ray`)."""
from __future__ import annotations

import pyarrow as pa
import ray

from raygrid.data.cache import load_tokenizer, tokenize_table
from raygrid.orchestration.cluster import init_ray


class _TokenizeBatch:
    """Ray Data actor: loads the tokenizer once, then tokenizes pyarrow batches."""

    def __init__(self, tokenizer_location: str, max_len: int):
        self.tokenizer, self.max_len = load_tokenizer(tokenizer_location), max_len

    def __call__(self, batch):
        return tokenize_table(batch, self.tokenizer, self.max_len, progress=False)


def ray_tokenize(actors: int = 2, batch_size: int = 256):
    """A `tokenize` for raygrid.data.cache.prepare that runs on a Ray Data actor pool.

    Order is preserved, so the cache holds exactly the rows the in-process path would write.
    """
    def tokenize(table, tokenizer_location: str, max_len: int):
        init_ray()
        ray.data.DataContext.get_current().execution_options.preserve_order = True
        # Hand Ray Data the table as several blocks so every actor gets work. (Slicing here, not
        # `repartition`: that needs CPU tasks the actor pool may already hold, and stalls.)
        step = max(batch_size, -(-table.num_rows // (actors * 4)))
        blocks = [table.slice(start, step) for start in range(0, max(table.num_rows, 1), step)]
        ds = ray.data.from_arrow(blocks).map_batches(
            _TokenizeBatch, fn_constructor_args=(tokenizer_location, max_len), batch_size=batch_size,
            batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=1)
        return pa.concat_tables(ray.get(ds.to_arrow_refs()))

    return tokenize
