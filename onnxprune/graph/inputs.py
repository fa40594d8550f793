"""The data inputs of an ONNX model: their dims, dtypes, and concrete shapes for shape inference.

:class:`ModelInputs` is the one typed description every stage uses: per input its name, dtype, dims
(static or dynamic) and, once resolved for a run, its concrete shape; its :attr:`ModelInputs.shape` is the
shape argument the graph functions take.

A *shape argument* is either a plain shape (``Sequence[int]``, batch included) that fixes the **first**
data input, or a mapping ``input name -> shape`` that fixes every data input. For a plain shape, the
other inputs are resolved from the model: fixed dims stay, a dynamic dim named like one of the first
input's dims (same ``dim_param``) takes its size, and an unnamed or unknown dynamic dim 0 takes the first
input's batch. Everything here is numpy / onnx only (no torch, no onnxruntime).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from numbers import Integral
from typing import Any

import numpy as np
import onnx

from ..data.arrays import Inputs
from ..data.fit import resolve_input_shape
from ..errors import DataError, InvalidModelError

Shape = tuple[int, ...]
InputShapes = dict[str, tuple[int, ...]]
# a plain shape (the first data input's) or one shape per data input, by name
ShapeArg = Sequence[int] | Mapping[str, Sequence[int]]
# one batch of model inputs: a bare array (feeds the first input) or arrays keyed by input name
Batch = np.ndarray | Mapping[str, np.ndarray]
# dims of one input: an int when fixed, the symbolic name (or None) when dynamic
Dims = list[int | str | None]


class ShapeError(DataError, ValueError):
    """``input_shape`` does not fit the model, or a shape that is needed stays unknown."""


@dataclass(frozen=True)
class ModelInput:
    """One data input of a model: its name, element type, dims (an int when static, the ``dim_param``
    or None when dynamic; None for an unknown rank) and, once resolved, its concrete shape."""

    name: str
    dtype: np.dtype[Any] | None  # None: not a numeric tensor type
    dims: tuple[int | str | None, ...] | None
    shape: Shape | None = None
    type: str = ""  # the runtime's name of the type (onnxruntime's 'tensor(float)'), where one is known

    @property
    def static(self) -> bool:
        """Every dim is fixed in the model."""
        return self.dims is not None and all(isinstance(d, int) for d in self.dims)


@dataclass(frozen=True)
class ModelInputs:
    """The data inputs of a model in graph order (:class:`ModelInput`): what every stage asks about them.

    :meth:`of` describes a model's inputs; :meth:`resolved` fixes their shapes for a run, and
    :attr:`shape` is the shape argument the graph functions take (analysis, costs, verification inputs).
    """

    inputs: tuple[ModelInput, ...]

    @classmethod
    def of(cls, model: onnx.ModelProto) -> ModelInputs:
        """The data inputs of ``model``; :class:`InvalidModelError` when it has none."""
        found = data_inputs(model)
        if not found:
            raise InvalidModelError("the model has no graph input")
        dtypes = input_dtypes(model)
        return cls(tuple(_described(vi, dtypes[vi.name]) for vi in found))

    def __iter__(self) -> Iterator[ModelInput]:
        return iter(self.inputs)

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def first(self) -> ModelInput:
        return self.inputs[0]

    def dims(self) -> dict[str, Dims]:
        """Input name -> dims (an input without a shape has [])."""
        return {i.name: list(i.dims or ()) for i in self.inputs}

    def dtypes(self) -> dict[str, np.dtype[Any]]:
        return {i.name: i.dtype for i in self.inputs if i.dtype is not None}

    @property
    def fixed_batch(self) -> int | None:
        """The fixed dim 0 every input shares, or None when any input's batch is dynamic (or the inputs
        disagree, or one is a scalar or of unknown rank)."""
        sizes = {(i.dims[0] if i.dims else None) for i in self.inputs}
        size = sizes.pop() if len(sizes) == 1 else None
        return size if isinstance(size, int) else None

    def resolved(
        self,
        model: onnx.ModelProto,
        given: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
        samples: Inputs | None = None,
    ) -> ModelInputs:
        """The inputs with concrete shapes at the model's fixed batch, else batch 1: with one array of
        samples (or none) the first input's (a plain ``given``, checked against its fixed dims, else the
        samples' or the model's own; the graph functions resolve any further input from it); with samples
        keyed by input name every input's (:func:`input_shapes` checks them against the model). A ``given``
        mapping has shaped the samples already; it only sets the batch of a dynamic-batch model."""
        batch = self.fixed_batch or 1
        if isinstance(given, Mapping):
            batch = self.fixed_batch or next((int(s[0]) for s in given.values() if len(s)), 1)
            given = None
        if samples is None or isinstance(samples, np.ndarray):
            default = None if samples is None else (batch, *samples.shape[1:])
            first = resolve_input_shape(self.dims()[self.first.name], given or default)
            return self._with({self.first.name: first})
        shapes = {name: (batch, *(int(d) for d in a.shape[1:])) for name, a in samples.items()}
        return self._with(input_shapes(model, shapes))

    def _with(self, shapes: Mapping[str, Shape]) -> ModelInputs:
        return ModelInputs(tuple(replace(i, shape=shapes.get(i.name, i.shape)) for i in self.inputs))

    @property
    def shape(self) -> ShapeArg:
        """The resolved shape argument of the graph functions: the first input's shape when only it is
        resolved, else every resolved input's shape by name."""
        known = {i.name: i.shape for i in self.inputs if i.shape is not None}
        if not known:
            raise ShapeError("the input shapes are not resolved")
        if len(known) == 1 and self.first.name in known:
            return known[self.first.name]
        return {name: shape for name, shape in known.items() if shape is not None}

    @property
    def first_shape(self) -> Shape:
        """The resolved shape of the first input (what the latency benchmark feeds)."""
        if self.first.shape is None:
            raise ShapeError("the input shapes are not resolved")
        return self.first.shape

    def to_json(self) -> list[int] | dict[str, list[int]]:
        """:attr:`shape` as JSON: a list (one input resolved), else a mapping input name -> list."""
        shape = self.shape
        if isinstance(shape, Mapping):
            return {name: list(s) for name, s in shape.items()}
        return list(shape)


def _described(vi: onnx.ValueInfoProto, dtype: np.dtype[Any]) -> ModelInput:
    dims = value_dims(vi)
    return ModelInput(vi.name, dtype, None if dims is None else tuple(dims))


def data_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The graph inputs that are not initializers (old IRs list initializers as inputs too), in order."""
    inits = {t.name for t in model.graph.initializer}
    return [vi for vi in model.graph.input if vi.name not in inits]


def value_dims(vi: onnx.ValueInfoProto) -> Dims | None:
    """Dims of ``vi``: int when fixed (> 0), the ``dim_param`` (or None) when dynamic; None when the value
    is not a tensor or has no shape (unknown rank)."""
    if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
        return None
    dims: Dims = []
    for d in vi.type.tensor_type.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(int(d.dim_value))
        else:
            dims.append(d.dim_param or None)
    return dims


def input_dtypes(model: onnx.ModelProto) -> dict[str, np.dtype[Any]]:
    """Data input name -> numpy dtype of its ONNX elem type (float32 where the type is not set)."""
    out: dict[str, np.dtype[Any]] = {}
    for vi in data_inputs(model):
        elem = vi.type.tensor_type.elem_type if vi.type.HasField("tensor_type") else 0
        out[vi.name] = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem) if elem else np.float32)
    return out


def input_shapes(model: onnx.ModelProto, shape: ShapeArg) -> InputShapes:
    """A concrete shape for every data input of ``model``, in input order.

    A mapping must name every data input and nothing else, with positive dims whose rank and fixed dims
    agree with the model (and equal sizes for equally named dynamic dims); it is returned as a dict of
    tuples. A plain shape fixes the first input and resolves the others (see the module docstring).
    Raises :class:`ShapeError` when the shape does not fit, or naming the input and dim that cannot be
    resolved from a plain shape.
    """
    resolved = resolve_input_dims(model, shape)
    for vi in data_inputs(model):
        dims = resolved.get(vi.name)
        if dims is None:
            raise ShapeError(
                f"graph input '{vi.name}' has no known rank: give shapes for every input "
                f"(a mapping input name -> shape)"
            )
        for i, d in enumerate(dims):
            if d is None:
                raise ShapeError(
                    f"dim {i} ({_dim_label(vi, i)}) of graph input '{vi.name}' cannot be resolved from the "
                    f"first input's shape: give shapes for every input (a mapping input name -> shape)"
                )
    return {name: tuple(d for d in dims if d is not None) for name, dims in resolved.items()}


def resolve_input_dims(model: onnx.ModelProto, shape: ShapeArg) -> dict[str, tuple[int | None, ...]]:
    """Like :func:`input_shapes`, but a dim a plain shape cannot resolve stays None, and an input without a
    known rank (other than the first) is left out: shape inference then keeps them dynamic.

    Raises :class:`ShapeError` when the model has no data input, when a mapping is incomplete or does not
    fit, or when the plain shape does not fit the first input.
    """
    inputs = data_inputs(model)
    if not inputs:
        raise ShapeError("the model has no graph input to fix to input_shape")
    if isinstance(shape, Mapping):
        return dict(_checked_mapping(inputs, shape))
    first = inputs[0]
    given = _positive_shape(shape, "input_shape")
    _check_fits(first, given, f"input_shape {given}")
    symbols = dim_symbols(value_dims(first) or [], given)
    out: dict[str, tuple[int | None, ...]] = {first.name: given}
    for vi in inputs[1:]:
        dims = value_dims(vi)
        if dims is not None:
            out[vi.name] = resolve_dims(dims, symbols, given[0])
    return out


def all_fixed(dims: Mapping[str, tuple[int | None, ...]]) -> InputShapes | None:
    """``dims`` as concrete shapes when every dim is known, else None."""
    if any(d is None for ds in dims.values() for d in ds):
        return None
    return {name: tuple(d for d in ds if d is not None) for name, ds in dims.items()}


def batch_len(x: Batch) -> int:
    """Number of samples (leading dim) of a batch; a mapping's arrays must all agree."""
    if isinstance(x, np.ndarray):
        return len(x)
    counts = {name: len(a) for name, a in x.items()}
    if len(set(counts.values())) > 1:
        raise DataError(f"inputs have different sample counts: {counts}")
    return next(iter(counts.values()), 0)


# --------------------------------------------------------------------------------------------- helpers


def _positive_shape(shape: Sequence[int], what: str, allow_scalar: bool = False) -> Shape:
    """``shape`` as a tuple of ints; a ShapeError unless every dim is positive and it is non-empty (empty
    allowed with ``allow_scalar``: a rank-0 input)."""
    dims = tuple(shape) if isinstance(shape, Sequence | np.ndarray) else None
    ok = (
        dims is not None
        and (len(dims) > 0 or allow_scalar)
        and all(isinstance(d, Integral) and not isinstance(d, bool) and int(d) > 0 for d in dims)
    )
    if dims is None or not ok:
        raise ShapeError(f"{what} must be a non-empty tuple of positive ints, got {shape!r}")
    return tuple(int(d) for d in dims)


def _check_fits(vi: onnx.ValueInfoProto, shape: Shape, what: str) -> None:
    """A ShapeError unless ``vi`` is a tensor whose rank and fixed dims (if known) match ``shape``."""
    if not vi.type.HasField("tensor_type"):
        raise ShapeError(f"graph input '{vi.name}' is not a tensor")
    dims = value_dims(vi)
    if dims is None:
        return
    if len(dims) != len(shape):
        raise ShapeError(f"{what} has rank {len(shape)} but graph input '{vi.name}' has rank {len(dims)}")
    for i, (dim, value) in enumerate(zip(dims, shape, strict=True)):
        if isinstance(dim, int) and dim != value:
            raise ShapeError(f"{what} disagrees with the fixed dim {i} (= {dim}) of graph input '{vi.name}'")


def dim_symbols(dims: Sequence[int | str | None], shape: Shape) -> dict[str, int]:
    """dim_param -> size, for the named dynamic dims of ``dims`` fixed to ``shape`` (first one wins)."""
    out: dict[str, int] = {}
    for dim, value in zip(dims, shape, strict=False):
        if isinstance(dim, str):
            out.setdefault(dim, value)
    return out


def resolve_dims(
    dims: Sequence[int | str | None], symbols: Mapping[str, int], batch: int
) -> tuple[int | None, ...]:
    """A further input's dims: fixed dims, sizes of symbols shared with the first input, dim 0 as the
    batch; None where none of these applies."""
    out: list[int | None] = []
    for i, dim in enumerate(dims):
        if isinstance(dim, int):
            out.append(dim)
        elif dim is not None and dim in symbols:
            out.append(symbols[dim])
        elif i == 0:
            out.append(batch)
        else:
            out.append(None)
    return tuple(out)


def _checked_mapping(inputs: list[onnx.ValueInfoProto], shapes: Mapping[str, Sequence[int]]) -> InputShapes:
    """The mapping as name -> tuple in input order, after checking names, dims and shared symbols."""
    names = [vi.name for vi in inputs]
    unknown = sorted(set(shapes) - set(names))
    if unknown:
        raise ShapeError(f"input shapes name {unknown[0]!r}, which is not a graph input (inputs: {names})")
    missing = [n for n in names if n not in shapes]
    if missing:
        raise ShapeError(
            f"input shapes give no shape for graph input {missing[0]!r}: give shapes for every input "
            f"(inputs: {names})"
        )
    out: InputShapes = {}
    seen: dict[str, tuple[str, int]] = {}  # dim_param -> (input, size) where it was first fixed
    for vi in inputs:
        shape = _positive_shape(shapes[vi.name], f"the shape of input '{vi.name}'", allow_scalar=True)
        _check_fits(vi, shape, f"shape {shape} of input '{vi.name}'")
        for i, (dim, value) in enumerate(zip(value_dims(vi) or [], shape, strict=False)):
            if not isinstance(dim, str):
                continue
            where, size = seen.setdefault(dim, (vi.name, value))
            if size != value:
                raise ShapeError(
                    f"dim {i} ('{dim}') of input '{vi.name}' is {value} but the same dim of input "
                    f"'{where}' is {size}: equally named dims must have the same size"
                )
        out[vi.name] = shape
    return out


def _dim_label(vi: onnx.ValueInfoProto, i: int) -> str:
    dims = value_dims(vi) or []
    dim = dims[i] if i < len(dims) else None
    return repr(dim) if isinstance(dim, str) else "unnamed"
