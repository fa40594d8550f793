"""Random inputs without labels: structure-only runs (previews, tests).

Float inputs are Gaussian. Integer and boolean inputs cannot be: a token id must index the embedding it
feeds and a mask must be a mask. :class:`InputDraw` says how one input is filled; the ONNX side chooses it
from the graph (:func:`onnxprune.graph.draws.input_draws`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .arrays import ArrayData, DataSplits, Inputs

DRAW_KINDS = ("gauss", "ids", "ones", "zeros")


@dataclass(frozen=True)
class InputDraw:
    """How random data fills one input: ``gauss`` (standard normal), ``ids`` (uniform integers in
    ``[0, high)``), ``ones`` or ``zeros``, as ``dtype``; ``why`` says what the choice was based on."""

    kind: str = "gauss"
    dtype: str = "float32"
    high: int = 0
    why: str = ""

    def __post_init__(self) -> None:
        if self.kind not in DRAW_KINDS or (self.kind == "ids" and self.high < 1):
            raise ValueError(f"invalid input draw {self}")

    def describe(self) -> str:
        what = {"gauss": "Gaussian", "ids": f"integers in [0, {self.high})", "ones": "ones", "zeros": "zeros"}
        return f"{what[self.kind]} ({self.dtype})" + (f": {self.why}" if self.why else "")

    def draw(self, rng: np.random.Generator, shape: Sequence[int]) -> np.ndarray:
        dims = tuple(int(d) for d in shape)
        if self.kind == "gauss":
            return rng.standard_normal(dims).astype(self.dtype)
        if self.kind == "ids":
            return rng.integers(0, self.high, dims).astype(self.dtype)
        return (np.ones if self.kind == "ones" else np.zeros)(dims, dtype=self.dtype)


def random_data(
    shape: Sequence[int] | Mapping[str, Sequence[int]],
    n_train: int,
    n_val: int,
    seed: int,
    draws: Mapping[str, InputDraw] | None = None,
) -> DataSplits:
    """Samples of ``shape`` (batch dim ignored), or of each input's shape for multi-input models, drawn as
    ``draws`` says per input name (default: Gaussian float32)."""
    rng = np.random.default_rng(seed)
    how = dict(draws or {})

    def draw(n: int) -> ArrayData:
        x: Inputs
        if isinstance(shape, Mapping):
            x = {name: how.get(name, InputDraw()).draw(rng, (n, *s[1:])) for name, s in shape.items()}
        else:
            only = next(iter(how.values()), InputDraw()) if len(how) == 1 else InputDraw()
            x = only.draw(rng, (n, *shape[1:]))
        return ArrayData(x)

    return DataSplits("random", draw(n_train), draw(n_val), draw(n_val))
