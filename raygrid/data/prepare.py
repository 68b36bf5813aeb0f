"""Which cache entry each cell trains on: documents for classification cells, token blocks for MLM.

Kept apart from raygrid.data.cache (the entry machinery both kinds share) so that the MLM side
(raygrid.data.mlm_data) can build on the cache without the cache importing it back.
"""
from __future__ import annotations

import json
from pathlib import Path

from raygrid.data import builds, storage
from raygrid.data.cache import PreparedData, prepare, tokenizer_location
from raygrid.data.mlm_data import prepare_mlm


def prepare_cells(cells, root: str | Path, progress: bool = True, tokenize=None) -> dict[str, PreparedData]:
    """Tokenize once per distinct (kind, data config, tokenizer) among model cells; cell name -> entry.

    `mlm` cells get MLM sequences (raygrid.data.mlm_data), the others documents. `tokenize`
    (raygrid.data.tokenize.Tokenize; None = in this process) serves both.
    """
    builds.sweep(str(root), storage.is_uri(str(root)))  # what killed builds left (raygrid.data.builds)
    entries: dict[str, PreparedData] = {}
    by_cell = {}
    for cell in cells:
        if cell.config.model is None:  # e.g. the TF-IDF baseline reads raw text
            continue
        location = tokenizer_location(cell.config.model)
        key = cell.config.kind + json.dumps(cell.config.data.rows_fields(), sort_keys=True) + location
        if key not in entries:
            if cell.config.kind == "mlm":
                entries[key] = prepare_mlm(cell.config.data, location, root, progress, tokenize)
            else:
                entries[key] = prepare(cell.config.data, location, root, progress, tokenize)
        by_cell[cell.name] = entries[key]
    return by_cell
