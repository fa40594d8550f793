"""Do samples fit the model's inputs? Concrete input shapes for models with dynamic dims."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import DataError
from .arrays import Inputs, check_names

# dims of a model input: an int for a fixed dim, None (or a name) for a dynamic one
Dims = Sequence[int | str | None]


def as_inputs(inputs: Mapping[str, Dims] | Dims) -> dict[str, Dims]:
    """The model's data inputs as name -> dims; bare dims stand for a single input."""
    if isinstance(inputs, Mapping):
        if not inputs:
            raise DataError("the model has no data input")
        return dict(inputs)
    return {"input": list(inputs)}


def check_fits(x: Inputs, inputs: Mapping[str, Dims] | Dims, source: str) -> None:
    """Error unless every input's sample shape matches the fixed dims of the model input it feeds."""
    inputs = as_inputs(inputs)
    if isinstance(x, np.ndarray):
        if len(inputs) > 1:
            raise DataError(
                f"data '{source}' has one array but the model has {len(inputs)} inputs "
                f"({', '.join(inputs)}): give arrays keyed by input name"
            )
        arrays = {next(iter(inputs)): x}
    else:
        check_names(list(x), list(inputs), f"data '{source}' has arrays")
        arrays = x
    for name, a in arrays.items():
        _check_one(a, inputs[name], source, name if len(inputs) > 1 else None)


def _check_one(x: np.ndarray, dims: Dims, source: str, name: str | None) -> None:
    what = f"data '{source}'" + (f" input {name!r}" if name else "")
    if x.ndim != len(dims):
        raise DataError(
            f"{what} has samples of shape {tuple(x.shape[1:])} but the model input has rank "
            f"{len(dims)} ({fmt_dims(dims)})"
        )
    for axis, (want, got) in enumerate(zip(dims[1:], x.shape[1:], strict=True), start=1):
        if isinstance(want, int) and want > 0 and want != got:
            raise DataError(
                f"{what} has samples of shape {tuple(x.shape[1:])} but the model input is "
                f"{fmt_dims(dims)} (axis {axis}: {got} != {want})"
            )


def fmt_dims(dims: Dims) -> str:
    return "(" + ", ".join(str(d) if isinstance(d, int) and d > 0 else "?" for d in dims) + ")"


def resolve_input_shape(dims: Dims, given: Sequence[int] | None, name: str | None = None) -> tuple[int, ...]:
    """A concrete input shape: ``given`` checked against the fixed dims, or the model's own if all fixed
    (dim 0, the batch, is 1 when dynamic). ``name``: the input's, for messages about multi-input models."""
    what = "the model input" + (f" {name!r}" if name else "")
    flag = f"--input-shape {name}:DIMS" if name else "--input-shape N,C,H,W"
    if given is not None:
        if len(given) != len(dims):
            raise DataError(f"--input-shape has rank {len(given)} but {what} is {fmt_dims(dims)}")
        for axis, (want, got) in enumerate(zip(dims, given, strict=True)):
            if isinstance(want, int) and want > 0 and want != got and axis > 0:
                raise DataError(f"--input-shape {tuple(given)} does not fit {what} {fmt_dims(dims)}")
        return tuple(int(g) for g in given)
    if any(not (isinstance(d, int) and d > 0) for d in dims[1:]):
        raise DataError(f"{what} {fmt_dims(dims)} has dynamic dims: give {flag}")
    batch = dims[0] if dims and isinstance(dims[0], int) and dims[0] > 0 else 1
    return (batch, *(int(d) for d in dims[1:]))  # type: ignore[arg-type]
