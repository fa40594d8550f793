"""Normalizations.

* BatchNormalization (inference form): ``y_c = scale_c (x_c - mean_c) / sqrt(var_c + eps) + bias_c``. With
  ``scale_c = bias_c = 0`` the output channel is exactly zero whatever ``x_c`` is, so scale and shift are
  SOURCE members (zeroed, in the group norm) and mean/var are only sliced.
* InstanceNormalization: ``y_c = scale_c (x_c - μ_c) / σ_c + B_c``: per channel, the same argument.
* LRN, GroupNormalization, LayerNormalization across the channels: a channel's output depends on its
  neighbours' values (the window, the group statistics), so removing one changes the others: kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx

from ...plan import Role
from ..channels import Channels, Shape
from ..index import GraphIndex
from ..registry import Effect, Outcome, Stop, register
from .common import AnyInputHandler, ShapedInputHandler, const_input, on_axes, only_first_output_used


class _PerChannelAffine(ShapedInputHandler):
    """Normalizes each channel on its own; ``sources``/``dependents`` are the parameter input ports."""

    sources: tuple[int, ...] = ()
    dependents: tuple[int, ...] = ()
    single_output = False  # training-mode outputs are part of the inference-form check below

    def apply(self, ctx: GraphIndex, node: onnx.NodeProto, x: Channels) -> Outcome:
        constant = all(const_input(ctx, node, p) is not None for p in (*self.sources, *self.dependents))
        if not constant or not only_first_output_used(ctx, node):
            return Stop(f"{node.op_type} {node.name!r} is not in inference form with constant parameters")
        return super().apply(ctx, node, x)

    def apply_shaped(self, ctx: GraphIndex, node: onnx.NodeProto, x: Channels, shape: Shape) -> Outcome:
        eff = Effect()
        ids, _ = on_axes(eff, node, x, shape, [1])
        for p in self.sources:
            eff.member(node, node.input[p], 0, Role.SOURCE, ids)
        for p in self.dependents:
            eff.member(node, node.input[p], 0, Role.DEPENDENT, ids)
        return eff.output(node.output[0], Channels.fresh(1, ids))


@register("BatchNormalization")
class BatchNormHandler(_PerChannelAffine):
    sources = (1, 2)
    dependents = (3, 4)


@register("InstanceNormalization")
class InstanceNormHandler(_PerChannelAffine):
    sources = (1, 2)


@register("LRN", "GroupNormalization", "LayerNormalization", "MeanVarianceNormalization", "LpNormalization")
class CrossChannelNorm(AnyInputHandler):
    def apply(self, ctx: GraphIndex, node: onnx.NodeProto, inputs: Sequence[Channels | None]) -> Outcome:
        return Stop(
            f"{node.op_type} {node.name!r} normalizes across channels: removing one changes the others"
        )
