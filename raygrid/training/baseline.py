"""The study's non-neural baseline: TF-IDF + logistic regression, on the same splits and metric.

TF-IDF: word 1-2-grams, max_features 20000, min_df 2, max_df 0.9 (scikit-learn defaults otherwise:
lowercase, the default token pattern, l2 norm, smooth idf). Logistic regression: max_iter 1000,
lbfgs, L2, C=1. Fitted on train only; model selection is not needed (no hyperparameters vary), so
validation is scored like test. No Ray, no MLflow: the caller logs the returned metrics.
"""
from __future__ import annotations

import time

import numpy as np
import pyarrow as pa

# The same F1-macro and memory figures as the fine-tuned cells, so the baseline row compares
# like with like (sklearn's macro F1 skips classes absent from both labels and predictions).
from raygrid.training.metrics import accuracy, f1_macro, peak_host_mem_mb

TFIDF_PARAMS = {"max_features": 20000, "ngram_range": (1, 2), "min_df": 2, "max_df": 0.9}
LR_PARAMS = {"max_iter": 1000}


def _columns(table: pa.Table, name: str) -> tuple[list[str], list[int]]:
    for column in ("text", "label"):
        if column not in table.column_names:
            raise ValueError(f"tfidf_lr: {name} table has no {column!r} column (has {', '.join(table.column_names)})")
    return table["text"].to_pylist(), table["label"].to_pylist()


def tfidf_lr(train: pa.Table, validation: pa.Table | None, test: pa.Table, seed: int = 0,
             num_labels: int | None = None) -> dict:
    """Fit TF-IDF + LR on `train`; score F1-macro and accuracy on validation and test.

    Returns {"val_f1_macro", "val_accuracy", "test_f1_macro", "test_accuracy", "train_time_s",
    "peak_host_mem_mb"}. train_time_s covers vectorizer and classifier fitting; peak_host_mem_mb is
    the process's peak RSS (a high-water mark since process start, so it includes what ran before).
    Validation metrics are None when `validation` is None. `seed` is the classifier's random_state
    (lbfgs is deterministic, so it only matters if the solver is changed).
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    train_texts, train_labels = _columns(train, "train")
    num_labels = num_labels or max(train_labels) + 1
    started = time.perf_counter()
    vectorizer = TfidfVectorizer(**TFIDF_PARAMS)
    features = vectorizer.fit_transform(train_texts)
    classifier = LogisticRegression(**LR_PARAMS, random_state=seed)
    classifier.fit(features, train_labels)
    train_time = time.perf_counter() - started

    def score(table: pa.Table | None, name: str) -> tuple[float | None, float | None]:
        if table is None:
            return None, None
        texts, labels = _columns(table, name)
        predicted = np.asarray(classifier.predict(vectorizer.transform(texts)))
        return f1_macro(predicted, np.asarray(labels), num_labels), accuracy(predicted, np.asarray(labels))

    val_f1, val_acc = score(validation, "validation")
    test_f1, test_acc = score(test, "test")
    return {"val_f1_macro": val_f1, "val_accuracy": val_acc, "test_f1_macro": test_f1, "test_accuracy": test_acc,
            "train_time_s": train_time, "peak_host_mem_mb": peak_host_mem_mb()}


__all__ = ["tfidf_lr", "TFIDF_PARAMS", "LR_PARAMS"]
