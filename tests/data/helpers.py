"""Accessors shared by the data-source tests (they narrow ArrayData's union types)."""

from __future__ import annotations

import numpy as np

from onnxprune.data import ArrayData


def xs(data: ArrayData) -> np.ndarray:
    assert isinstance(data.x, np.ndarray)
    return data.x


def ys(data: ArrayData) -> np.ndarray:
    assert data.y is not None
    return data.y


def xd(data: ArrayData) -> dict[str, np.ndarray]:
    assert isinstance(data.x, dict)
    return data.x
