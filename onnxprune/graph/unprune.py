"""Trained values of the pruned model back into the dense model they were cut from.

Surgery maps a dense model D to the pruned model P = S(D) (:func:`onnxprune.graph.edit.prune_model`): it
keeps, along every sliced (initializer, axis), the positions K of the kept channels, and adds to the
consumers' biases the contribution c of the removed constant channels, which reads only removed slices
of D. So S is a translation on the kept values: S(D)[K] = D[K] + c. Retraining P to P' therefore comes
back to the dense side as

    D' = D + scatter_K(P' − P),     with S(D') = P'  and  mask(D') = mask(D) + scatter_K(P' − P),

and the masked model of D' is the model P' must reproduce: ``compress`` exports D' as it exports any
trained model, and the verification (pruned ≡ masked on ONNX Runtime) is the one every run does.

What the translation does not cover is refused: a float initializer of P whose shape is not the dense
one cut along its sliced axes, and a bias surgery *created* (no dense counterpart) whose values changed.
``Surgery.created_names`` names what must not train on the pruned side; :func:`round_trip_error` checks
the whole mapping on a random update before anything trains.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx

from ..errors import UnsupportedModelError
from ..plan import Masks, PruningPlan
from .edit import Surgery, initializer_arrays, plan_surgery, prune_model, replace_initializers
from .protos import tensor_array

T = onnx.TensorProto
FLOAT_TYPES = (T.FLOAT, T.FLOAT16, T.DOUBLE, T.BFLOAT16)


def scatter_update(
    dense: onnx.ModelProto, before: Mapping[str, np.ndarray], after: Mapping[str, np.ndarray], cut: Surgery
) -> onnx.ModelProto:
    """D + scatter_K(after − before): ``before`` are the pruned model's float initializers as surgery
    wrote them, ``after`` the same after retraining (by name), ``cut`` the surgery of ``dense``
    (:func:`~onnxprune.graph.edit.plan_surgery`; see the module docstring). Raises
    :class:`UnsupportedModelError` naming the first initializer the translation cannot carry back; the
    biases surgery creates (``cut.created_names``) must not have changed."""
    inits = {t.name: t for t in dense.graph.initializer}
    arrays: dict[str, np.ndarray] = {}
    for name, new in after.items():
        old = before[name]
        if old.shape != new.shape:
            raise UnsupportedModelError(f"retrained {name!r} changed shape {old.shape} -> {new.shape}")
        delta = np.asarray(new, dtype=np.float64) - np.asarray(old, dtype=np.float64)
        if not delta.any():
            continue
        if name in cut.created_names or name not in inits:
            raise UnsupportedModelError(f"retrained {name!r} has no initializer in the dense model")
        values = np.array(tensor_array(inits[name]))
        kept = [np.arange(n) for n in values.shape]  # K, per axis
        for axis, mask in cut.axes.get(name, []):
            kept[axis] = np.flatnonzero(mask)
        cut_shape = tuple(len(k) for k in kept)
        if cut_shape != delta.shape:
            raise UnsupportedModelError(
                f"retrained {name!r} of shape {delta.shape} is not the dense {values.shape} cut to "
                f"{cut_shape}"
            )
        grid = np.ix_(*kept)
        values[grid] = (values[grid].astype(np.float64) + delta).astype(values.dtype)
        arrays[name] = values
    return replace_initializers(dense, arrays)


def float_names(model: onnx.ModelProto) -> set[str]:
    """The floating-point initializers' names."""
    return {t.name for t in model.graph.initializer if t.data_type in FLOAT_TYPES}


def float_initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Writable copies of the floating-point initializers, by name."""
    return initializer_arrays(model, float_names(model))


def round_trip_error(
    dense: onnx.ModelProto, plan: PruningPlan, masks: Masks, trainable: set[str], seed: int = 0
) -> str | None:
    """Why retraining the pruned model could not be carried back exactly, or None: a random update of
    the ``trainable`` initializers of P = S(dense) must satisfy S(scatter_update(P, P + δ)) = P + δ
    to 1e-6 (folded biases round once more on the way back)."""
    cut = plan_surgery(dense, plan, masks)
    before = float_initializers(prune_model(dense, plan, masks))
    rng = np.random.default_rng(seed)
    moved = trainable - cut.created_names
    after = {
        name: (a + rng.standard_normal(a.shape)).astype(a.dtype) if name in moved else a
        for name, a in before.items()
    }
    try:
        back = prune_model(scatter_update(dense, before, after, cut), plan, masks)
    except UnsupportedModelError as e:
        return str(e)
    got = float_initializers(back)
    for name, want in after.items():
        if name not in got or got[name].shape != want.shape:
            return f"{name!r} does not come back from the dense model"
        if not np.allclose(got[name], want, rtol=1e-6, atol=1e-6):
            return f"{name!r} comes back {float(np.abs(got[name] - want).max()):.1e} off"
    return None


__all__ = ["float_initializers", "float_names", "round_trip_error", "scatter_update"]
