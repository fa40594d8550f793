"""Fixtures shared by the test modules, and the skipping of the torch tests where torch is missing.

The ONNX side runs without torch (the ``train`` extra): there the tests under ``tests/train/`` are not
collected and every test marked ``torch`` (one that trains, imports or compresses) is skipped, so the
rest runs as a check that the ONNX side needs nothing more (``scripts/test.sh``'s torch-free step).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.builders import write_labeled_npz

HAS_TORCH = importlib.util.find_spec("torch") is not None
collect_ignore = [] if HAS_TORCH else ["train"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if HAS_TORCH:
        return
    skip = pytest.mark.skip(reason="needs torch (the train extra)")
    for item in items:
        if item.get_closest_marker("torch") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """160 random (4, 8, 8) inputs with 4 classes a small CNN can learn (``four_channel_cnn``), as .npz."""
    return write_labeled_npz(tmp_path_factory.mktemp("d") / "d.npz", samples=160, channels=4)
