"""``module:function`` data sources: a user's Python function returning a DataLoader (or any iterable).

The function is called without arguments. It returns an iterable of batches, or a mapping with ``train``
and optionally ``val`` and ``test`` iterables. A batch is an array/tensor of inputs, a tuple/list
``(x, y)`` (``x`` itself an array, a tuple in model-input order or a dict keyed by input name), or a dict
keyed by input names plus an optional label key (``y``, ``label`` or ``labels``). Batches are read once
into memory (``max_samples`` caps each split); tensors are moved to the CPU.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .arrays import ArrayData, Inputs

ENTRY_POINT = re.compile(r"^([A-Za-z_][\w.]*):([A-Za-z_]\w*)$")
LABEL_KEYS = ("y", "label", "labels")
SPLITS = ("train", "val", "test")


def is_entry_point(source: str) -> bool:
    return bool(ENTRY_POINT.match(source)) and not Path(source).exists()


def load_entry_point(
    source: str, input_names: Sequence[str], max_samples: int | None = None
) -> dict[str, ArrayData]:
    """``{'train': ..., 'val'?: ..., 'test'?: ...}`` read from the iterables ``module:function`` returns."""
    match = ENTRY_POINT.match(source)
    if not match:
        raise DataError(f"data '{source}' is not a module:function entry point")
    module_name, func_name = match.groups()
    func = _resolve(module_name, func_name, source)
    try:
        returned = func()
    except Exception as e:  # the user's code: report it in one line
        raise DataError(f"data entry point {source} raised {type(e).__name__}: {e}") from None
    if isinstance(returned, Mapping):
        keys = sorted(returned, key=str)  # key=str: non-string keys must not break the message
        loaders = {k: v for k, v in returned.items() if v is not None}
        if any(k not in SPLITS for k in keys) or "train" not in loaders:
            raise DataError(
                f"data entry point {source} returned a mapping with keys {keys}: "
                f"expected 'train' and optionally 'val', 'test'"
            )
    else:
        loaders = {"train": returned}
    return {k: read_batches(v, input_names, f"{source} ({k})", max_samples) for k, v in loaders.items()}


def _resolve(module_name: str, func_name: str, source: str) -> Any:
    # console scripts do not put the working directory on sys.path; users expect `my_data:loader` there
    cwd = str(Path.cwd())
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise DataError(f"data entry point {source}: cannot import module {module_name!r} ({e})") from None
    except Exception as e:
        raise DataError(
            f"data entry point {source}: importing {module_name!r} raised {type(e).__name__}: {e}"
        ) from None
    finally:
        if added:
            sys.path.remove(cwd)
    func = getattr(module, func_name, None)
    if not callable(func):
        raise DataError(f"data entry point {source}: module {module_name!r} has no function {func_name!r}")
    return func


def read_batches(
    batches: Iterable[Any], input_names: Sequence[str], what: str, max_samples: int | None = None
) -> ArrayData:
    """Concatenate an iterable of batches into arrays (see the module docstring for batch formats)."""
    if not isinstance(batches, Iterable):
        raise DataError(
            f"data {what}: expected a DataLoader or an iterable of batches, got {type(batches).__name__}"
        )
    xs: list[dict[str, np.ndarray]] = []
    ys: list[np.ndarray] = []
    count = 0
    try:
        for i, batch in enumerate(batches):
            x, y = _unpack(batch, input_names, f"data {what}, batch {i}")
            if xs and (y is None) != (not ys):
                raise DataError(f"data {what}, batch {i}: some batches have labels and some do not")
            # per batch: counts that only disagree within batches would shift samples against labels
            counts = {name: len(a) for name, a in x.items()}
            n = counts[input_names[0]]
            if len(set(counts.values())) > 1:
                raise DataError(f"data {what}, batch {i}: inputs have different sample counts {counts}")
            if y is not None and len(y) != n:
                raise DataError(f"data {what}, batch {i}: {n} samples but {len(y)} labels")
            xs.append(x)
            if y is not None:
                ys.append(y)
            count += n
            if max_samples is not None and count >= max_samples:
                break
    except DataError:
        raise
    except Exception as e:  # the user's iterator
        raise DataError(f"data {what}: reading batches raised {type(e).__name__}: {e}") from None
    if not xs:
        raise DataError(f"data {what}: the loader yielded no batches")
    merged: dict[str, np.ndarray] = {}
    for name in input_names:
        parts = [x[name] for x in xs]
        shapes = {p.shape[1:] for p in parts}
        if len(shapes) > 1:
            raise DataError(
                f"data {what}: input {name!r} has batches of different sample shapes {sorted(shapes)}"
            )
        merged[name] = np.concatenate(parts)[:max_samples]
    y = np.concatenate(ys)[:max_samples] if ys else None
    inputs: Inputs = merged[input_names[0]] if len(input_names) == 1 else merged
    try:
        return ArrayData(inputs, y)
    except DataError as e:
        raise DataError(f"data {what}: {e}") from None


def _unpack(batch: Any, names: Sequence[str], what: str) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    if isinstance(batch, Mapping):
        label_key = next((k for k in LABEL_KEYS if k in batch), None)
        arrays = {k: v for k, v in batch.items() if k != label_key}
        return _inputs(arrays, names, what), labels_array(batch[label_key] if label_key else None, what)
    if isinstance(batch, tuple | list):
        if len(batch) == 2 and len(names) > 1 and _grouped_inputs(batch[0], names):
            # ((a, b), y) or ({'a': a, 'b': b}, y): checked first, as (a, b) has the same length
            return _inputs(batch[0], names, what), labels_array(batch[1], what)
        if len(batch) == len(names) + 1:
            inputs = batch[0] if len(names) == 1 else batch[:-1]
            return _inputs(inputs, names, what), labels_array(batch[-1], what)
        if len(batch) == len(names):
            return _inputs(batch[0] if len(names) == 1 else batch, names, what), None
        if len(batch) == 2 and isinstance(batch[0], Mapping | tuple | list):
            return _inputs(batch[0], names, what), labels_array(batch[1], what)
        raise DataError(
            f"{what}: a tuple of {len(batch)} items does not fit a model with {len(names)} input(s) "
            "(expected inputs, optionally followed by labels)"
        )
    return _inputs(batch, names, what), None


def _grouped_inputs(x: Any, names: Sequence[str]) -> bool:
    """Is ``x`` all inputs of a multi-input model: a dict, or one array/tensor per input?"""
    if isinstance(x, Mapping):
        return True
    return isinstance(x, tuple | list) and len(x) == len(names) and all(hasattr(a, "shape") for a in x)


def _inputs(x: Any, names: Sequence[str], what: str) -> dict[str, np.ndarray]:
    if isinstance(x, Mapping):
        missing = [n for n in names if n not in x]
        if missing:
            raise DataError(f"{what}: no array for model input {missing[0]!r} (keys: {sorted(x)})")
        return {n: _array(x[n], what) for n in names}
    if isinstance(x, tuple | list) and len(names) > 1:
        if len(x) != len(names):
            raise DataError(f"{what}: {len(x)} arrays for a model with inputs {list(names)}")
        return {n: _array(a, what) for n, a in zip(names, x, strict=True)}
    if len(names) > 1:
        raise DataError(
            f"{what}: one array for a model with inputs {list(names)}: yield a dict keyed by input name"
        )
    return {names[0]: _array(x, what)}


def _array(a: Any, what: str) -> np.ndarray:
    if hasattr(a, "detach"):  # a torch tensor, possibly on a GPU; no torch import needed
        a = a.detach().cpu().numpy()
    try:
        out = np.asarray(a)
    except Exception as e:
        raise DataError(f"{what}: cannot read {type(a).__name__} as an array ({e})") from None
    if out.ndim == 0 or out.dtype == object:
        raise DataError(f"{what}: expected a batch array, got {type(a).__name__} of shape {out.shape}")
    return out.astype(np.float32) if out.dtype.kind == "f" and out.dtype != np.float32 else out


def labels_array(y: Any, what: str) -> np.ndarray | None:
    if y is None:
        return None
    a = _array(y, what)
    if a.dtype.kind == "f" and not np.all(a == np.round(a)):
        raise DataError(f"{what}: labels must be class indices (integers), got non-integral floats")
    return a.astype(np.int64).reshape(-1)
