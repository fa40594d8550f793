"""In-memory samples: one array per model input (a bare array for single-input models), optional labels.

numpy only: the ONNX side evaluates these arrays in ONNX Runtime, the torch side wraps them in a
DataLoader. Images are float32 NCHW scaled to [0, 1]; any normalization belongs inside the model graph.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..errors import DataError

# Samples of a model's inputs: a bare array (single-input model) or arrays keyed by input name.
Inputs = np.ndarray | dict[str, np.ndarray]


def n_samples(x: Inputs) -> int:
    if isinstance(x, np.ndarray):
        return len(x)
    return len(next(iter(x.values()))) if x else 0


def take(x: Inputs, index: np.ndarray | slice) -> Inputs:
    """Samples ``index`` of every input."""
    if isinstance(x, np.ndarray):
        return x[index]
    return {name: a[index] for name, a in x.items()}


def feeds(x: Inputs, names: Sequence[str]) -> dict[str, np.ndarray]:
    """``x`` as a feed dict keyed by the model's input ``names`` (a bare array feeds the first one)."""
    if isinstance(x, np.ndarray):
        return {names[0]: x}
    missing = [n for n in names if n not in x]
    if missing:
        raise DataError(f"the data has no array for model input {missing[0]!r} (has: {', '.join(x)})")
    return {n: x[n] for n in names}


def check_names(given: Sequence[str], wanted: Sequence[str], what: str) -> None:
    """DataError unless ``given`` names exactly the inputs ``wanted``; ``what`` starts the message."""
    unknown = sorted(set(given) - set(wanted))
    missing = [n for n in wanted if n not in given]
    if unknown or missing:
        raise DataError(
            f"{what} {sorted(given)} but the model inputs are {list(wanted)}"
            + (f" (missing {missing[0]!r})" if missing else f" (unknown {unknown[0]!r})")
        )


def first(x: Inputs) -> np.ndarray:
    """The first input's samples (the image of a single-input model)."""
    return x if isinstance(x, np.ndarray) else next(iter(x.values()))


@dataclass(frozen=True)
class ArrayData:
    x: Inputs
    y: np.ndarray | None = None

    def __post_init__(self) -> None:
        if isinstance(self.x, Mapping):
            counts = {name: len(a) for name, a in self.x.items()}
            if len(set(counts.values())) > 1:
                raise DataError(f"inputs have different sample counts: {counts}")
        if self.y is not None and len(self.y) != n_samples(self.x):
            raise DataError(f"{n_samples(self.x)} samples but {len(self.y)} labels")

    def __len__(self) -> int:
        return n_samples(self.x)

    @property
    def labeled(self) -> bool:
        return self.y is not None

    def take(self, index: np.ndarray | slice) -> ArrayData:
        return ArrayData(take(self.x, index), None if self.y is None else self.y[index])

    def head(self, n: int) -> ArrayData:
        return self.take(slice(0, n))

    def unlabeled(self) -> ArrayData:
        return replace(self, y=None)


@dataclass(frozen=True)
class DataSplits:
    """train / validation / test arrays; ``test`` is the split accuracy is reported on."""

    name: str
    train: ArrayData
    val: ArrayData
    test: ArrayData

    @property
    def labeled(self) -> bool:
        return self.train.labeled

    def for_training_without_labels(self) -> DataSplits:
        """Labels withheld from training and validation; the test split keeps them, for the report only."""
        return replace(self, train=self.train.unlabeled(), val=self.val.unlabeled())


def split(data: ArrayData, val_fraction: float, seed: int) -> tuple[ArrayData, ArrayData]:
    """Seeded random train/validation split."""
    n = len(data)
    n_val = max(1, round(n * val_fraction)) if n > 1 else 0
    order = np.random.default_rng(seed).permutation(n)
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    return data.take(train_idx), data.take(val_idx)
