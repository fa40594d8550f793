"""onnxprune's own onnx2torch converters, one module per op family, registered in front of onnx2torch's
during an import (:func:`installed`; see :mod:`.registry`).

* :mod:`.normalization`: LayerNormalization (normalized shape read at run time), BatchNormalization of
  any rank;
* :mod:`.clip`: Clip with omitted ('') or computed bounds;
* :mod:`.conv`: Conv with a computed weight or bias (weight standardization), all attributes;
* :mod:`.dropout`: Dropout of every opset, with its mask output;
* :mod:`.pooling`: AveragePool with asymmetric or SAME pads;
* :mod:`.reshape`: Flatten at any axis (0, negative), Reshape with ``allowzero=1``;
* :mod:`.activations`: Gelu (opset 20);
* :mod:`.versions`: operator versions of opsets 16-22 onnx2torch does not know (same-meaning aliases,
  Reduce* and Split of opset 18, Pad / Resize 18+ at their defaults).
"""

from . import activations, clip, conv, dropout, normalization, pooling, reshape, versions  # noqa: F401  (each registers its converters)
from .registry import REGISTRY, converter, installed

__all__ = ["REGISTRY", "converter", "installed"]
