"""Fixtures shared by the test modules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """160 random (4, 8, 8) inputs with 4 classes a small CNN can learn (``four_channel_cnn``), as .npz."""
    rng = np.random.default_rng(0)
    x = rng.random((160, 4, 8, 8)).astype(np.float32)
    y = (x[:, 0].mean(axis=(1, 2)) > x[:, 1].mean(axis=(1, 2))).astype(np.int64) + 2 * (x[:, 2, 0, 0] > 0.5)
    path = tmp_path_factory.mktemp("d") / "d.npz"
    np.savez(path, x=x, y=y)
    return path
