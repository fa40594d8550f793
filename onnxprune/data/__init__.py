"""Data sources, resolved to in-memory train / validation / test arrays (numpy only).

``--data`` (or ``data=`` in the Python API) is one of:

- ``fashion-mnist``: Debian's ``dataset-fashion-mnist`` IDX files (train + t10k test split);
- ``random``: Gaussian inputs without labels (structure previews);
- a path to an IDX images file (``*-images-idx3-ubyte[.gz]``; labels from the ``labels-idx1`` file beside it);
- a path to an ``.npz`` (``x`` or one array per input name, optional ``y``, optional ``*_test`` arrays);
- a directory of images: class sub-folders (labels in sorted folder order) or flat (no labels), read
  with a preprocessing spec (resize, crop, mean/std, channel order);
- ``module:function``: a Python function returning a DataLoader, or a dict of them
  (``train``, optional ``val`` and ``test``);
- in Python also arrays, ``(x, y)``, :class:`ArrayData`, :class:`DataSplits` or an iterable of batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .arrays import ArrayData, DataSplits, Inputs, feeds, first, n_samples, split, take
from .entry import is_entry_point, labels_array, load_entry_point, read_batches
from .fit import Dims, as_inputs, check_fits, fmt_dims, resolve_input_shape
from .idx import FASHION_MNIST_DIR, FASHION_MNIST_PACKAGE, is_idx, load_fashion_mnist, load_idx, read_idx
from .npz import load_npz
from .synthetic import InputDraw, random_data

SOURCES = "'fashion-mnist', 'random', an .npz or IDX file, an image folder or module:function"


def load_data(
    source: Any,
    inputs: Mapping[str, Dims] | Dims,
    input_shape: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    n_random: int = 256,
    preprocess: Any = None,
    max_samples: int | None = None,
    draws: Mapping[str, InputDraw] | None = None,
) -> DataSplits:
    """Resolve a data source (see the module docstring) into seeded train / validation / test splits.

    ``inputs`` are the model's data inputs (name -> dims), or the dims of its single input.
    ``input_shape``: the shape of the single input, or a mapping input name -> shape (inputs it does not
    name must have fixed non-batch dims); only ``random`` needs it for dynamic dims. ``draws``: how
    ``random`` fills each input (default Gaussian; integer inputs need ids and masks, see
    :func:`onnxprune.graph.draws.input_draws`). ``max_samples`` caps every split (the first samples of each).
    Without a test split of its own, the validation split doubles as the test split.
    """
    dims_of = as_inputs(inputs)
    names = list(dims_of)
    if isinstance(source, DataSplits):
        for part in (source.train, source.val, source.test):
            check_fits(part.x, dims_of, source.name)
        return source
    if isinstance(source, str) and source == "random":
        shapes: Any
        if isinstance(input_shape, Mapping):
            _check_shape_names(input_shape, names)
            shapes = {n: resolve_input_shape(d, input_shape.get(n), n) for n, d in dims_of.items()}
        elif len(names) == 1:
            shapes = resolve_input_shape(dims_of[names[0]], input_shape)
        elif input_shape is not None:
            raise DataError(
                f"the model has {len(names)} inputs ({', '.join(names)}): give --input-shape NAME:DIMS "
                f"for each input with dynamic dims"
            )
        else:
            shapes = {n: resolve_input_shape(d, None, n) for n, d in dims_of.items()}
        n = n_random if max_samples is None else max(2, min(n_random, max_samples))  # the cap applies too
        return random_data(shapes, n, max(8, n // 4), seed, draws)
    name, full, val, test = _read(source, names, preprocess, max_samples, dims_of)
    if max_samples is not None:  # loaders stop reading at the cap; files are read whole, then cut
        full = full.head(max_samples)
        val = None if val is None else val.head(max_samples)
        test = None if test is None else test.head(max_samples)
    if len(full) < 2 and val is None:
        raise DataError(f"data '{name}' has {len(full)} samples; need at least 2")
    check_fits(full.x, dims_of, name)
    if val is None:
        train, val = split(full, val_fraction, seed)
    else:
        train = full
        check_fits(val.x, dims_of, name)
    if test is None:
        test = val
    else:
        check_fits(test.x, dims_of, name)
    return DataSplits(name, train, val, test)


def _read(
    source: Any, names: list[str], preprocess: Any, max_samples: int | None, dims_of: Mapping[str, Dims]
) -> tuple[str, ArrayData, ArrayData | None, ArrayData | None]:
    """(name, train-or-full, val or None, test or None) of any source but 'random'."""
    if isinstance(source, ArrayData):
        return "arrays", source, None, None
    if isinstance(source, np.ndarray) or (isinstance(source, Mapping) and _all_arrays(source)):
        return "arrays", ArrayData(_float(source)), None, None
    if isinstance(source, tuple) and len(source) == 2 and not isinstance(source[0], str):
        return "arrays", ArrayData(_float(source[0]), labels_array(source[1], "(x, y) labels")), None, None
    if not isinstance(source, str | Path):
        if isinstance(source, Iterable):
            return "loader", read_batches(source, names, "loader", max_samples), None, None
        raise DataError(f"cannot use a {type(source).__name__} as data (use {SOURCES})")
    text = str(source)
    if text == "fashion-mnist":
        full, test = load_fashion_mnist()
        return "fashion-mnist", full, None, test
    if isinstance(source, str) and is_entry_point(text):
        parts = load_entry_point(text, names, max_samples)
        return text, parts["train"], parts.get("val"), parts.get("test")
    path = Path(text)
    if not path.exists():
        raise DataError(f"data '{text}' not found (use {SOURCES})")
    if path.is_dir():
        from .folder import load_image_folder

        return path.name, load_image_folder(path, dims_of[names[0]], preprocess, names), None, None
    if path.suffix == ".npz":
        full, npz_test = load_npz(path, names)
        return path.name, full, None, npz_test
    if is_idx(path):
        return path.name, load_idx(path), None, None
    raise DataError(f"data '{text}': unsupported format (use {SOURCES})")


def _check_shape_names(shapes: Mapping[str, Sequence[int]], names: list[str]) -> None:
    unknown = [n for n in shapes if n not in names]
    if unknown:
        raise DataError(
            f"--input-shape names {unknown[0]!r}, which is not a model input (inputs: {', '.join(names)})"
        )


def _all_arrays(x: Mapping[Any, Any]) -> bool:
    return bool(x) and all(isinstance(v, np.ndarray) for v in x.values())


def _float(x: Any) -> Inputs:
    """Float arrays as float32 (the dtype of the models' inputs); other dtypes (ids, masks) as they are."""
    if isinstance(x, Mapping):
        return {str(k): _float(v) for k, v in x.items()}  # type: ignore[misc]
    a = np.asarray(x)
    return a.astype(np.float32) if a.dtype.kind == "f" else a


__all__ = [
    "FASHION_MNIST_DIR",
    "FASHION_MNIST_PACKAGE",
    "SOURCES",
    "ArrayData",
    "DataSplits",
    "Dims",
    "InputDraw",
    "Inputs",
    "as_inputs",
    "check_fits",
    "feeds",
    "first",
    "fmt_dims",
    "load_data",
    "load_fashion_mnist",
    "load_idx",
    "load_npz",
    "n_samples",
    "random_data",
    "read_batches",
    "read_idx",
    "resolve_input_shape",
    "split",
    "take",
]
