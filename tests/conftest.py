"""Fixtures shared by the test modules."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.builders import write_labeled_npz


@pytest.fixture(scope="module")
def npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """160 random (4, 8, 8) inputs with 4 classes a small CNN can learn (``four_channel_cnn``), as .npz."""
    return write_labeled_npz(tmp_path_factory.mktemp("d") / "d.npz", samples=160, channels=4)
