"""TF-IDF + logistic regression baseline on a small synthetic, learnable dataset."""
import subprocess
import sys

import numpy as np
import pyarrow as pa

from raygrid.training.baseline import tfidf_lr

FILLER = [f"filler{i}" for i in range(60)]
CUES = {0: ["calm", "steady", "moderate", "balanced", "measured"], 1: ["outrage", "traitor", "disgrace", "rigged", "evil"]}


def synthetic(n, seed, shuffle_labels=False):
    """Documents of 30 filler words plus 6 words drawn from the label's cue list (1 in 10 from the other)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    texts = []
    for label in labels:
        words = list(rng.choice(FILLER, 30))
        for _ in range(6):
            cue_label = label if rng.random() > 0.1 else 1 - label
            words.append(str(rng.choice(CUES[cue_label])))
        rng.shuffle(words)
        texts.append(" ".join(words))
    if shuffle_labels:
        labels = rng.permutation(labels)
    return pa.table({"text": texts, "label": pa.array(labels, pa.int64())})


def test_learnable_data_scores_well_and_shuffled_labels_do_not():
    train, validation, test = synthetic(300, 0), synthetic(100, 1), synthetic(100, 2)
    result = tfidf_lr(train, validation, test, seed=0)
    assert set(result) == {"val_f1_macro", "val_accuracy", "test_f1_macro", "test_accuracy", "train_time_s",
                           "peak_host_mem_mb"}
    assert result["val_f1_macro"] > 0.85 and result["test_f1_macro"] > 0.85
    assert result["test_accuracy"] > 0.85
    assert 0 < result["train_time_s"] < 30 and result["peak_host_mem_mb"] > 10

    shuffled = tfidf_lr(synthetic(300, 0, shuffle_labels=True), validation, test, seed=0)
    assert shuffled["test_f1_macro"] < 0.7
    assert shuffled["test_f1_macro"] < result["test_f1_macro"] - 0.2


def test_deterministic_and_validation_optional():
    train, test = synthetic(200, 3), synthetic(60, 4)
    first, second = tfidf_lr(train, None, test), tfidf_lr(train, None, test)
    assert first["val_f1_macro"] is None and first["val_accuracy"] is None
    assert first["test_f1_macro"] == second["test_f1_macro"]


def test_baseline_imports_neither_ray_nor_mlflow():
    code = ("import sys, raygrid.training.baseline\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'mlflow')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
