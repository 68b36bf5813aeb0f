"""`raygrid bench data`: what the data path costs, in figures for BENCHMARKS.md.

- `prepare`: peak memory (RSS) of `raygrid data prepare` on a corpus and on 10x that corpus:
  Wikipedia-like articles built from the shared sample (copies, each perturbed) under the study's
  corpus rule, and a long-document classification set (Hyperpartisan articles joined into ~40k-
  character documents). Each `data prepare` runs in a child process of its own; its peak RSS is the
  kernel's account of that child (os.wait4's ru_maxrss), with its CPU seconds beside wall time.
- `tokenize`: tokenization throughput of the in-process path and of a Ray Data pool of N actors
  (`data prepare --ray --actors N`), and the scaling with N, on the same Wikipedia-like corpus.
More measurements plug in as further modes (MODES: a name -> module with add_arguments / main).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util

MODES = {
    "prepare": ("raygrid.bench.data_memory", "peak RSS of `data prepare` on a corpus and on 10x it"),
    "tokenize": ("raygrid.bench.data_tokenize", "tokens/s in process and on N Ray Data tokenizer actors"),
    "trial": ("raygrid.bench.data_trial", "a trial's driver and worker RSS reading a cache and a 10x cache"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    modes = parser.add_subparsers(dest="mode", required=True)
    for name, (module_name, help_text) in MODES.items():
        if importlib.util.find_spec(module_name) is None:  # a mode another part of raygrid has not added yet
            continue
        mode = modes.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(module_name)
        module.add_arguments(mode)
        mode.set_defaults(mode_main=module.main)


def main(args) -> int:
    return args.mode_main(args)
