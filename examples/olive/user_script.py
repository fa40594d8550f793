"""Fashion-MNIST for Olive's calibration and latency data configs (Olive loads this file as a user script).

The samples come from onnxprune's own reader (Debian's dataset-fashion-mnist IDX files, offline): Olive's
calibration reader and evaluators take ``(inputs, label)`` pairs; ``inputs`` maps the model's input name
to a (1, 28, 28) float32 image.
"""

from __future__ import annotations

from typing import Any

from olive.data.registry import Registry


class FashionMnist:
    """The first ``samples`` test images of Fashion-MNIST as an indexable dataset of (image, label)."""

    def __init__(self, samples: int) -> None:
        from onnxprune.data import load_fashion_mnist

        _, test = load_fashion_mnist()
        self.x = test.x[:samples]
        self.y = test.y[:samples]

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        return {"input": self.x[i]}, self.y[i]  # keyed by the model's input name


@Registry.register_dataset()
def fashion_mnist_dataset(data_name: str = "", samples: int = 64, **kwargs: Any) -> FashionMnist:
    """Olive's load-dataset component (``data_name`` is passed by Olive and unused here)."""
    return FashionMnist(samples)
