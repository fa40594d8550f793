"""How close the pruned model stays to the dense one, and top-1 accuracy when there are labels.

ONNX side (ONNX Runtime on held-out samples, no torch). Per output, the relative error
‖pruned − dense‖_F / ‖dense‖_F over the whole split. For classifiers (first output of shape (N, C),
C ≥ 2) also the top-1 agreement (fraction of samples where both models predict the same class).
The single *fidelity* number used by ``--min-fidelity`` is the agreement for classifiers and
1 − (relative error of the first output) otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from ..data import ArrayData
from .sessions import make_session, run_batched


def evaluate(dense: onnx.ModelProto, pruned: onnx.ModelProto, data: ArrayData, split: str) -> dict[str, Any]:
    """``{'fidelity', 'measure', 'agreement', 'output_rel_error', 'max_abs_diff', 'mean_abs_diff', 'samples',
    'split'}`` (the absolute differences: of the first output) plus, with labels,
    ``dense_top1``, ``pruned_top1`` and ``drop_pp`` (percentage points)."""
    d_sess = make_session(dense)
    names = [o.name for o in d_sess.get_outputs()]
    d_out = run_batched(d_sess, data.x)
    del d_sess  # one session at a time: a large dense model is not held twice
    p_out = run_batched(make_session(pruned), data.x)
    rel = {n: frobenius_relative_error(d, p) for n, d, p in zip(names, d_out, p_out, strict=True)}
    result: dict[str, Any] = {"split": split, "samples": len(data), "output_rel_error": rel}
    first_d, first_p = d_out[0], p_out[0]
    diff = np.abs(first_p.astype(np.float64) - first_d.astype(np.float64))  # of the first output
    result |= {
        "max_abs_diff": float(diff.max(initial=0.0)),
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
    }
    if first_d.ndim == 2 and first_d.shape[1] >= 2:
        d_pred, p_pred = first_d.argmax(1), first_p.argmax(1)
        agreement = float((d_pred == p_pred).mean())
        result |= {"agreement": agreement, "fidelity": agreement, "measure": "top-1 agreement"}
        if data.y is not None:
            dense_top1, pruned_top1 = float((d_pred == data.y).mean()), float((p_pred == data.y).mean())
            result |= {
                "dense_top1": dense_top1,
                "pruned_top1": pruned_top1,
                "drop_pp": 100 * (dense_top1 - pruned_top1),
            }
    else:
        result |= {
            "agreement": None,
            "fidelity": 1.0 - rel[names[0]],
            "measure": "1 - relative output error",
        }
    return result


def frobenius_relative_error(reference: np.ndarray, candidate: np.ndarray) -> float:
    """‖candidate − reference‖_F / ‖reference‖_F (0 when both are 0)."""
    ref, cand = reference.astype(np.float64), candidate.astype(np.float64)
    num, den = float(np.linalg.norm(cand - ref)), float(np.linalg.norm(ref))
    if den == 0:
        return 0.0 if num == 0 else float("inf")
    return num / den
