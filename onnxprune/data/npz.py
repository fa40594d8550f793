"""``.npz`` files: ``x`` (single-input models) or one array per input name; optional ``y``, test split."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import DataError
from .arrays import ArrayData, Inputs

TEST_SUFFIX = "_test"


def load_npz(path: Path, input_names: Sequence[str] = ("x",)) -> tuple[ArrayData, ArrayData | None]:
    """Train arrays and, when the file has them, test arrays (``x_test``/``y_test``, ``<input>_test``).

    A single-input model reads ``x`` (or the array named after its input); a multi-input model reads
    one array per input name.
    """
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"cannot read {path} as .npz: {e}") from None
    keys = _input_keys(arrays, input_names, path)

    def pair(suffix: str) -> ArrayData | None:
        if keys[0] + suffix not in arrays:
            return None
        x: Inputs
        if len(keys) == 1:
            x = _input_array(arrays[keys[0] + suffix])
        else:
            missing = [k + suffix for k in keys if k + suffix not in arrays]
            if missing:
                raise DataError(f"{path} has no array {missing[0]!r} (found: {sorted(arrays)})")
            x = {name: _input_array(arrays[k + suffix]) for name, k in zip(input_names, keys, strict=True)}
        y = arrays.get("y" + suffix)
        if y is not None:
            y = np.asarray(y)
            if y.dtype.kind == "f" and not np.all(y == np.round(y)):
                raise DataError(
                    f"{path}: 'y{suffix}' holds non-integral values: labels must be class indices (integers)"
                )
            y = y.astype(np.int64).reshape(-1)
            n = len(x) if isinstance(x, np.ndarray) else len(next(iter(x.values())))
            if len(y) != n:
                raise DataError(f"{path}: '{keys[0] + suffix}' has {n} samples but 'y{suffix}' has {len(y)}")
        try:
            return ArrayData(x, y)
        except DataError as e:
            raise DataError(f"{path}: {e}") from None

    train = pair("")
    assert train is not None
    return train, pair(TEST_SUFFIX)


def _input_array(a: np.ndarray) -> np.ndarray:
    """Floats (and 8-bit pixels, unscaled) as float32, the models' input type; other types as they are."""
    a = np.asarray(a)
    return a.astype(np.float32) if a.dtype.kind == "f" or a.dtype == np.uint8 else a


def _input_keys(arrays: dict[str, np.ndarray], input_names: Sequence[str], path: Path) -> list[str]:
    if len(input_names) == 1:
        for key in ("x", input_names[0]):
            if key in arrays:
                return [key]
        raise DataError(f"{path} has no array 'x' (found: {sorted(arrays) or 'nothing'})")
    missing = [n for n in input_names if n not in arrays]
    if missing:
        raise DataError(
            f"{path} has no array for model input {missing[0]!r}: a model with inputs "
            f"{list(input_names)} needs one array per input name (found: {sorted(arrays) or 'nothing'})"
        )
    return list(input_names)
