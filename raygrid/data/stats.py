"""Descriptive statistics of labelled (or unlabelled) text splits, for the dataset tables of the study.

Per split: documents, label counts and shares, character length (mean / median / p95 / max) and, with
a tokenizer, token length with the share of documents longer than `max_len` (those the model sees
truncated). Percentiles are numpy's default (linear interpolation). Pure pyarrow/numpy; the tokenizer
is only called, never imported.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_TOKENIZE_BATCH = 256


def length_summary(lengths: Sequence[int] | np.ndarray) -> dict[str, float | int | None]:
    """{"mean", "median", "p95", "max"} of a list of lengths (None values when it is empty)."""
    values = np.asarray(lengths, dtype=np.int64)
    if values.size == 0:
        return {"mean": None, "median": None, "p95": None, "max": None}
    return {"mean": float(values.mean()), "median": float(np.median(values)),
            "p95": float(np.percentile(values, 95)), "max": int(values.max())}


def token_lengths(texts: Sequence[str], tokenizer) -> np.ndarray:
    """Token count of each text, special tokens included (what `max_len` truncates).

    `tokenizer` is a HF tokenizer (called on batches, without truncation) or any callable
    str -> sequence of tokens.
    """
    lengths: list[int] = []
    is_hf = hasattr(tokenizer, "model_input_names") or hasattr(tokenizer, "batch_encode_plus")
    for start in range(0, len(texts), _TOKENIZE_BATCH):
        batch = list(texts[start:start + _TOKENIZE_BATCH])
        if is_hf:
            encoded = tokenizer(batch, truncation=False, add_special_tokens=True, verbose=False)
            lengths += [len(ids) for ids in encoded["input_ids"]]
        else:
            lengths += [len(tokenizer(text)) for text in batch]
    return np.asarray(lengths, dtype=np.int64)


def _label_counts(labels: pa.ChunkedArray | None, label_names: Sequence[str] | None) -> dict[str, int] | None:
    if labels is None:
        return None
    counts = {row["values"]: row["counts"] for row in pc.value_counts(labels).to_pylist()} if len(labels) else {}
    keys = set(counts) | (set(range(len(label_names))) if label_names is not None else set())

    def name(key):
        if label_names is not None and isinstance(key, int) and 0 <= key < len(label_names):
            return str(label_names[key])
        return str(key)

    return {name(key): int(counts.get(key, 0)) for key in sorted(keys, key=lambda k: (k is None, k))}


def _measure(table: pa.Table, tokenizer, text_column: str) -> dict:
    """Raw per-document measurements of one table: char (and token) lengths, labels."""
    texts = table[text_column]
    chars = pc.fill_null(pc.utf8_length(texts), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    tokens = None if tokenizer is None else token_lengths([t or "" for t in texts.to_pylist()], tokenizer)
    labels = table["label"] if "label" in table.column_names else None
    return {"n": table.num_rows, "chars": chars, "tokens": tokens, "labels": labels}


def _summarise(measured: dict, max_len: int | None, label_names: Sequence[str] | None) -> dict:
    n = measured["n"]
    labels = _label_counts(measured["labels"], label_names)
    stats = {"documents": n, "labels": labels,
             "label_share": None if labels is None else {k: (v / n if n else None) for k, v in labels.items()},
             "chars": length_summary(measured["chars"])}
    tokens = measured["tokens"]
    if tokens is not None:
        stats["tokens"] = length_summary(tokens)
        if max_len is not None:
            stats["tokens"]["max_len"] = int(max_len)
            stats["tokens"]["truncated_share"] = float((tokens > max_len).mean()) if n else None
    return stats


def split_stats(table: pa.Table, tokenizer=None, max_len: int | None = None,
                label_names: Sequence[str] | None = None, text_column: str = "text") -> dict:
    """Statistics of one table (see `dataset_stats`)."""
    return _summarise(_measure(table, tokenizer, text_column), max_len, label_names)


def dataset_stats(tables: Mapping[str, pa.Table], tokenizer=None, max_len: int | None = None,
                  label_names: Sequence[str] | None = None, text_column: str = "text") -> dict:
    """{"splits": {split: stats}, "total": stats over all splits together}.

    Each stats dict: documents; labels (name -> count; None without a `label` column); label_share;
    chars {mean, median, p95, max}; and with a tokenizer, tokens {mean, median, p95, max} (special
    tokens included) plus max_len and truncated_share (share of documents with more than max_len
    tokens) when max_len is given. Label keys are `label_names[i]` when given, else the label value
    as a string. Each text is tokenized once.
    """
    measured = {name: _measure(table, tokenizer, text_column) for name, table in tables.items()}
    result = {"splits": {name: _summarise(m, max_len, label_names) for name, m in measured.items()}}
    parts = list(measured.values())
    if not parts:
        result["total"] = None
        return result
    all_labelled = all(m["labels"] is not None for m in parts)
    total = {"n": sum(m["n"] for m in parts),
             "chars": np.concatenate([m["chars"] for m in parts]),
             "tokens": None if tokenizer is None else np.concatenate([m["tokens"] for m in parts]),
             "labels": pa.chunked_array([c for m in parts for c in m["labels"].cast(pa.int64()).chunks],
                                        pa.int64()) if all_labelled else None}
    result["total"] = _summarise(total, max_len, label_names)
    return result


def _fmt_number(value, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, int) or digits == 0:
        return f"{int(round(value)):,}"
    return f"{value:,.{digits}f}"


def _fmt_lengths(summary: dict) -> str:
    return " / ".join(_fmt_number(summary[k]) for k in ("mean", "median", "p95", "max"))


def format_stats(stats: dict, title: str | None = None) -> str:
    """A Markdown table of `dataset_stats` output: one row per split, then the total."""
    rows = dict(stats["splits"])
    if len(rows) > 1 and stats.get("total") is not None:
        rows["total"] = stats["total"]
    has_tokens = any("tokens" in s for s in rows.values())
    max_len = next((s["tokens"].get("max_len") for s in rows.values() if "tokens" in s), None)
    header = ["split", "documents", "labels (count, share)", "chars mean / median / p95 / max"]
    if has_tokens:
        header.append("tokens mean / median / p95 / max")
        if max_len is not None:
            header.append(f"truncated at {max_len:,}")
    lines = ([f"### {title}", ""] if title else []) + [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(["---"] + ["---:"] * 1 + ["---"] + ["---:"] * (len(header) - 3)) + " |",
    ]
    for name, s in rows.items():
        if s["labels"] is None:
            labels = "(unlabelled)"
        else:
            labels = ", ".join(f"{k} {v:,} ({_fmt_share(s['label_share'][k])})" for k, v in s["labels"].items())
        cells = [f"**{name}**" if name == "total" else name, _fmt_number(s["documents"]), labels,
                 _fmt_lengths(s["chars"])]
        if has_tokens:
            cells.append(_fmt_lengths(s["tokens"]) if "tokens" in s else "–")
            if max_len is not None:
                cells.append(_fmt_share(s.get("tokens", {}).get("truncated_share")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _fmt_share(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


__all__ = ["dataset_stats", "split_stats", "format_stats", "length_summary", "token_lengths"]
