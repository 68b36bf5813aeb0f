"""The study's own split rules, with scikit-learn and pandas themselves (research_design.md).

The study built its splits with `sklearn.model_selection.train_test_split` and pandas'
`DataFrame.sample`, both seeded with 42. Which rows they pick depends only on the row count, the
labels and the row order, so the rules run here on small `(row, label)` frames and return row
numbers; the texts are streamed afterwards (raygrid.data.documents). Calling the same library
functions on the same order gives the same documents as the study's notebooks
(`research/tokenization/*.ipynb` of Bartekb3/fromscratch-transformer-classifier).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from raygrid.data.raw import DataError

STUDY_SEED = 42  # the study's random_state everywhere; data.split_seed does not apply to its rules
HYPERPARTISAN_SIZES = (52_000, 13_000)  # balanced training rows; validation + test rows before halving


def two_step(labels: np.ndarray, rest_first: str) -> dict[str, np.ndarray]:
    """80 % train, then the rest halved: {split: row numbers into `labels`, in the rule's order}.

    `labels` is the concatenation the study split (IMDB: test then train; ArXiv: test, train,
    validation). Both splits are `train_test_split(..., random_state=42, stratify=label)`, the
    first with test_size 0.2, the second with 0.5 on the rest; `rest_first` names the split the
    second call's first part becomes (IMDB "test", ArXiv "validation").
    """
    frame = pd.DataFrame({"row": np.arange(len(labels)), "label": labels})
    train, rest = _split(frame, 0.2, "label")
    first, second = _split(rest, 0.5, "label")
    other = "validation" if rest_first == "test" else "test"
    return {"train": train["row"].to_numpy(), rest_first: first["row"].to_numpy(), other: second["row"].to_numpy()}


def hyperpartisan_bypublisher(train_labels: np.ndarray, heldout_labels: np.ndarray,
                              sizes: tuple[int, int] = HYPERPARTISAN_SIZES) -> dict[str, np.ndarray]:
    """The study's by-publisher split: train from the training file, validation and test from the validation file.

    Each file's kept articles (>= 7,000 characters, in file order; label 1 = hyperpartisan) are
    balanced and resized (`balanced_sample`) to sizes[0] (train) and sizes[1]; the latter is cut
    in half by a stratified `train_test_split(test_size=0.5, random_state=42)`: validation is the
    first part, test the second. Returns {"train": rows of the training file, "validation" and
    "test": rows of the validation file}, each in the rule's order.
    """
    train = balanced_sample(train_labels, sizes[0], "the by-publisher training file")
    heldout = balanced_sample(heldout_labels, sizes[1], "the by-publisher validation file")
    validation, test = _split(heldout, 0.5, "class")
    return {"train": train["row"].to_numpy(), "validation": validation["row"].to_numpy(),
            "test": test["row"].to_numpy()}


def balanced_sample(labels: np.ndarray, size: int, where: str) -> pd.DataFrame:
    """The study's `downsample_majority` then `resize_balanced(size)`: frame(row, class), size rows.

    Downsampling: the majority class is class 0 when it has strictly more rows than class 1, else
    class 1; `majority.sample(n=len(minority), random_state=42)`, concatenated after the minority,
    shuffled with `sample(frac=1, random_state=42)`. Resizing: per class (0, then 1)
    `sample(n=size // 2, random_state=42)`, concatenated, shuffled the same way.
    """
    frame = pd.DataFrame({"row": np.arange(len(labels)), "class": labels})
    class_0, class_1 = frame[frame["class"] == 0], frame[frame["class"] == 1]
    majority, minority = (class_0, class_1) if len(class_0) > len(class_1) else (class_1, class_0)
    half = size // 2
    if len(minority) < half:
        raise DataError(f"hyperpartisan: {where} keeps {len(class_0)} articles of class 0 and {len(class_1)} of "
                        f"class 1; balancing to {size:,} rows needs {half:,} of each (data.study_sizes)")
    balanced = _shuffle(pd.concat([minority, majority.sample(n=len(minority), random_state=STUDY_SEED)]))
    per_class = [balanced[balanced["class"] == label].sample(n=half, random_state=STUDY_SEED) for label in (0, 1)]
    return _shuffle(pd.concat(per_class))


def _shuffle(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sample(frac=1, random_state=STUDY_SEED).reset_index(drop=True)


def _split(frame: pd.DataFrame, test_size: float, column: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.model_selection import train_test_split  # late: scikit-learn is only needed for study splits

    try:
        return train_test_split(frame, test_size=test_size, random_state=STUDY_SEED, stratify=frame[column])
    except ValueError as err:  # e.g. a class with a single row cannot be stratified
        raise DataError(f"data.split: study: scikit-learn cannot split {len(frame)} rows stratified ({err})") from None
