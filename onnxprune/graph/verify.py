"""Pruned == masked: the surgery is checked on every compress, in ONNX Runtime.

The masked dense model (removed channels' sources set to zero) and the physically pruned model must
give the same outputs. Relative error of one output: ``max|a - b| / max(max|a|, tiny)``; the check
passes when every output's error is <= ``rtol``. Both models also pass ``onnx.checker`` (full check).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, overload

import numpy as np
import onnx
from numpy.typing import DTypeLike

from ..data.arrays import check_names
from ..errors import DataError, VerificationError
from ..runtime.sessions import make_session, run_batched
from .inputs import Batch, Shape, ShapeArg, batch_len
from .protos import check_model


@dataclass
class VerifyResult:
    max_rel_error: float
    per_output: dict[str, float]
    samples: int
    rtol: float

    @property
    def passed(self) -> bool:
        return self.max_rel_error <= self.rtol

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def max_relative_error(ref: np.ndarray, got: np.ndarray) -> float:
    """``max|ref − got| / max(max|ref|, 1e-12)`` in float64; inf when the shapes differ."""
    ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
    if ref64.shape != got64.shape:
        return float("inf")
    scale = max(float(np.abs(ref64).max(initial=0.0)), 1e-12)
    return float(np.abs(ref64 - got64).max(initial=0.0) / scale)


def compare_models(
    reference: onnx.ModelProto | str | Path,
    candidate: onnx.ModelProto | str | Path,
    inputs: Sequence[Batch],
    rtol: float = 1e-4,
) -> VerifyResult:
    """Run both models on each input batch; the largest relative error over outputs and batches.

    Each batch is an array (fed to the first input) or a mapping input name -> array for every input
    (see :func:`onnxprune.runtime.sessions.run_batched`). Models are ModelProtos or paths (external data
    found beside them); one session lives at a time (the reference's outputs are kept), so a large model
    is never held by two sessions at once."""
    ref_sess = make_session(reference)
    names = [o.name for o in ref_sess.get_outputs()]
    ref_outs = [run_batched(ref_sess, x) for x in inputs]
    del ref_sess
    cand_sess = make_session(candidate)
    per_output = dict.fromkeys(names, 0.0)
    samples = 0
    for x, ref_out in zip(inputs, ref_outs, strict=True):
        cand_out = run_batched(cand_sess, x)
        samples += batch_len(x)
        for name, a, b in zip(names, ref_out, cand_out, strict=True):
            per_output[name] = max(per_output[name], max_relative_error(a, b))
    return VerifyResult(max(per_output.values(), default=0.0), per_output, samples, rtol)


def verify_pruned(
    masked: onnx.ModelProto | str | Path,
    pruned: onnx.ModelProto | str | Path,
    inputs: Sequence[Batch],
    rtol: float = 1e-4,
) -> VerifyResult:
    """Raise :class:`VerificationError` unless the pruned model is valid and reproduces the masked one.

    Either model may be a path (e.g. the masked model streamed to a file by
    :func:`onnxprune.graph.edit.write_masked`); a large ModelProto is checked and run through a file."""
    try:
        check_model(pruned, full_check=True)
    except Exception as e:
        raise VerificationError(
            f"the pruned model fails the ONNX checker: {str(e).splitlines()[0]}"
        ) from None
    result = compare_models(masked, pruned, inputs, rtol)
    if not result.passed:
        worst = max(result.per_output, key=lambda k: result.per_output[k])
        raise VerificationError(
            f"pruned model differs from the masked model: relative error {result.max_rel_error:.3g} "
            f"on output {worst!r} (tolerance {rtol:g}); no model was written"
        )
    return result


@overload
def verification_inputs(
    input_shape: Sequence[int],
    seed: int,
    real: Batch | None = None,
    batch: int = 8,
    dtypes: Mapping[str, DTypeLike] | None = None,
) -> list[np.ndarray]: ...


@overload
def verification_inputs(
    input_shape: Mapping[str, Sequence[int]],
    seed: int,
    real: Batch | None = None,
    batch: int = 8,
    dtypes: Mapping[str, DTypeLike] | None = None,
) -> list[dict[str, np.ndarray]]: ...


def verification_inputs(
    input_shape: ShapeArg,
    seed: int,
    real: Batch | None = None,
    batch: int = 8,
    dtypes: Mapping[str, DTypeLike] | None = None,
) -> list[np.ndarray] | list[dict[str, np.ndarray]]:
    """Seeded input batches of ``batch`` samples at the model's input shape(s), for :func:`compare_models`.

    Plain ``input_shape`` (the first input's): a Gaussian and a uniform [0, 1) float32 batch, plus the
    first ``batch`` samples of ``real`` (an array, or a mapping with a single array) when it has any;
    ``dtypes`` is not consulted.

    Mapping input name -> shape: dict batches keyed like ``input_shape``. Float inputs (``dtypes``, default
    float32) get the Gaussian and the uniform batch (drawn in that order, inputs in order: one float32
    input gives the plain arrays); other inputs (token ids, masks) take the first ``batch`` samples of
    ``real[name]`` (tiled when there are fewer) in both, zeros without ``real``. With ``real`` (a mapping
    naming every input, or an array for a single input) a third batch holds its first samples.
    Raises :class:`DataError` when ``real`` does not fit.
    """
    if isinstance(input_shape, Mapping):
        shapes = {name: tuple(int(d) for d in s) for name, s in input_shape.items()}
        types = {name: np.dtype((dtypes or {}).get(name, np.float32)) for name in shapes}
        return _mapping_inputs(shapes, types, seed, _real_by_name(real, shapes), batch)
    rng = np.random.default_rng(seed)
    shape = (batch, *input_shape[1:])
    batches = [rng.standard_normal(shape).astype(np.float32), rng.uniform(0, 1, shape).astype(np.float32)]
    first = _single_real(real)
    if first is not None and len(first):
        batches.append(np.ascontiguousarray(first[:batch], dtype=np.float32))
    return batches


def _single_real(real: Batch | None) -> np.ndarray | None:
    """The one array of ``real`` (a bare array or a one-entry mapping)."""
    if real is None or isinstance(real, np.ndarray):
        return real
    if len(real) != 1:
        raise DataError(
            f"real samples for {len(real)} inputs ({', '.join(real)}) but one input shape: give the "
            f"input shapes as a mapping input name -> shape"
        )
    return next(iter(real.values()))


def _real_by_name(real: Batch | None, shapes: Mapping[str, Shape]) -> dict[str, np.ndarray] | None:
    """``real`` keyed by input name, checked against ``shapes`` (names, sample shapes, counts); None when
    there are no real samples."""
    if real is None:
        return None
    if isinstance(real, np.ndarray):
        if len(shapes) != 1:
            raise DataError(
                f"one array of real samples but {len(shapes)} inputs ({', '.join(shapes)}): give arrays "
                f"keyed by input name"
            )
        real = {next(iter(shapes)): real}
    check_names(list(real), list(shapes), "the real samples have arrays")
    for name, shape in shapes.items():
        got = tuple(np.shape(real[name])[1:])
        if got != tuple(shape[1:]):
            raise DataError(f"real samples of input {name!r} have shape {got}, the input {tuple(shape[1:])}")
    if batch_len(real) == 0:
        return None
    return {name: np.asarray(real[name]) for name in shapes}


def _mapping_inputs(
    shapes: Mapping[str, Shape],
    types: Mapping[str, np.dtype[Any]],
    seed: int,
    real: Mapping[str, np.ndarray] | None,
    batch: int,
) -> list[dict[str, np.ndarray]]:
    """The dict batches of :func:`verification_inputs` (pre: ``real`` checked by :func:`_real_by_name`)."""
    rng = np.random.default_rng(seed)
    floats = [n for n in shapes if types[n].kind == "f"]
    fixed = {n: _tiled(real, n, (batch, *shapes[n][1:]), types[n]) for n in shapes if n not in floats}
    gauss = {n: rng.standard_normal((batch, *shapes[n][1:])).astype(types[n]) for n in floats}
    unif = {n: rng.uniform(0, 1, (batch, *shapes[n][1:])).astype(types[n]) for n in floats}
    batches = [{n: gauss[n] if n in gauss else fixed[n] for n in shapes}]
    batches.append({n: unif[n] if n in unif else fixed[n] for n in shapes})
    if real is not None:
        batches.append({n: np.ascontiguousarray(real[n][:batch], dtype=types[n]) for n in shapes})
    return batches


def _tiled(
    real: Mapping[str, np.ndarray] | None, name: str, shape: Shape, dtype: np.dtype[Any]
) -> np.ndarray:
    """The first ``shape[0]`` samples of ``real[name]``, repeated when there are fewer; zeros without."""
    if real is None:
        return np.zeros(shape, dtype=dtype)
    a = real[name][: shape[0]]
    return np.ascontiguousarray(np.take(a, np.arange(shape[0]) % len(a), axis=0), dtype=dtype)
