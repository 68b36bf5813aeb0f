"""Tokenizing missing cache entries on a Ray Data actor pool (`--tokenize-actors N`, `data prepare --ray`).

Serves every cache builder (classification documents, MLM corpora and task text alike): the
builder's document batches are produced by one Ray read task, pinned to this node (the source files,
hub downloads and converted archives are here), and stream to N tokenizer actors anywhere in the
cluster; this process consumes the tokenized batches in order and writes the cache entry. Ray
Data's backpressure bounds what is in flight, so memory stays bounded on every node.
"""
from __future__ import annotations

import os
from typing import Iterator

import pyarrow as pa
import ray
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from raygrid.data.tokenize import Batches, TokenizeSpec, cutting_tokenizer, tokenize_table
from raygrid.orchestration.cluster import init_ray

# The read holds no CPU of its own: N actors on N CPUs must not starve it (it runs beside this process,
# reading files and applying the corpus rule). A different CPU request than the actors' also keeps Ray
# Data from fusing the read into them (fused, one actor would read and tokenize everything, on this node).
READ_CPUS = 0


class _Documents(Datasource):
    """A builder's batches as one streaming read task (its order is the cache's row order)."""

    def __init__(self, batches: Batches):
        self._batches = batches

    def estimate_inmemory_data_size(self):
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit=None, data_context=None) -> list[ReadTask]:
        batches = self._batches
        metadata = BlockMetadata(num_rows=None, size_bytes=None, input_files=None, exec_stats=None)
        return [ReadTask(lambda: iter(batches()), metadata)]


class _TokenizeBatch:
    """Ray Data actor: loads the tokenizer once, then tokenizes pyarrow batches."""

    def __init__(self, spec: TokenizeSpec):
        # One tokenizer thread per actor, as its one CPU: N actors then use N cores, not N x all cores.
        os.environ.setdefault("RAYON_NUM_THREADS", "1")
        self.tokenizer, self.max_len = cutting_tokenizer(spec.tokenizer), spec.max_len

    def __call__(self, batch: pa.Table) -> pa.Table:
        return tokenize_table(batch, self.tokenizer, self.max_len)


def ray_tokenize(actors: int = 2):
    """A raygrid.data.tokenize.Tokenize that runs on a Ray Data pool of `actors` tokenizer actors.

    Order is preserved, so the cache holds exactly the rows (and bytes) the in-process path writes.
    """
    def tokenize(batches: Batches, spec: TokenizeSpec) -> Iterator[pa.Table]:
        init_ray()
        ray.data.DataContext.get_current().execution_options.preserve_order = True
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        documents = ray.data.read_datasource(_Documents(batches), override_num_blocks=1, num_cpus=READ_CPUS,
                                             ray_remote_args={"scheduling_strategy": here})
        tokenized = documents.map_batches(_TokenizeBatch, fn_constructor_args=(spec,), batch_size=None,
                                          batch_format="pyarrow",
                                          compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors),
                                          num_cpus=1)
        for batch in tokenized.iter_batches(batch_size=None, batch_format="pyarrow"):
            yield batch

    return tokenize
