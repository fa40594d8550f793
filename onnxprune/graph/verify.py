"""Pruned == masked: the surgery is checked on every compress, in ONNX Runtime.

The masked dense model (removed channels' sources set to zero) and the physically pruned model must
give the same outputs. Relative error of one output: ``max|a - b| / max(max|a|, tiny)``; the check
passes when every output's error is <= ``rtol``. Both models also pass ``onnx.checker`` (full check).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import onnx

from ..errors import VerificationError
from .runtime import make_session, run_batched


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


def relative_error(ref: np.ndarray, got: np.ndarray) -> float:
    ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
    if ref64.shape != got64.shape:
        return float("inf")
    scale = max(float(np.abs(ref64).max(initial=0.0)), 1e-12)
    return float(np.abs(ref64 - got64).max(initial=0.0) / scale)


def compare_models(
    reference: onnx.ModelProto, candidate: onnx.ModelProto, inputs: Sequence[np.ndarray], rtol: float = 1e-4
) -> VerifyResult:
    """Run both models on each input batch; the largest relative error over outputs and batches."""
    ref_sess, cand_sess = make_session(reference), make_session(candidate)
    names = [o.name for o in ref_sess.get_outputs()]
    per_output = dict.fromkeys(names, 0.0)
    samples = 0
    for x in inputs:
        ref_out, cand_out = run_batched(ref_sess, x), run_batched(cand_sess, x)
        samples += len(x)
        for name, a, b in zip(names, ref_out, cand_out, strict=True):
            per_output[name] = max(per_output[name], relative_error(a, b))
    return VerifyResult(max(per_output.values(), default=0.0), per_output, samples, rtol)


def verify_pruned(
    masked: onnx.ModelProto, pruned: onnx.ModelProto, inputs: Sequence[np.ndarray], rtol: float = 1e-4
) -> VerifyResult:
    """Raise :class:`VerificationError` unless the pruned model is valid and reproduces the masked one."""
    try:
        onnx.checker.check_model(pruned, full_check=True)
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


def verification_inputs(
    input_shape: Sequence[int], seed: int, real: np.ndarray | None = None, batch: int = 8
) -> list[np.ndarray]:
    """Gaussian inputs at the model's input shape, plus a batch of real samples when there are any."""
    rng = np.random.default_rng(seed)
    shape = (batch, *input_shape[1:])
    batches = [rng.standard_normal(shape).astype(np.float32), rng.uniform(0, 1, shape).astype(np.float32)]
    if real is not None and len(real):
        batches.append(np.ascontiguousarray(real[:batch], dtype=np.float32))
    return batches
