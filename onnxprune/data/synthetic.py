"""Random inputs without labels: structure-only runs (previews, tests)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .arrays import ArrayData, DataSplits, Inputs


def random_data(
    shape: Sequence[int] | Mapping[str, Sequence[int]], n_train: int, n_val: int, seed: int
) -> DataSplits:
    """Gaussian samples of ``shape`` (batch dim ignored), or of each input's shape for multi-input models."""
    rng = np.random.default_rng(seed)

    def draw(n: int) -> ArrayData:
        x: Inputs
        if isinstance(shape, Mapping):
            x = {name: _gauss(rng, n, s) for name, s in shape.items()}
        else:
            x = _gauss(rng, n, shape)
        return ArrayData(x)

    return DataSplits("random", draw(n_train), draw(n_val), draw(n_val))


def _gauss(rng: np.random.Generator, n: int, shape: Sequence[int]) -> np.ndarray:
    return rng.standard_normal((n, *(int(d) for d in shape[1:]))).astype(np.float32)
