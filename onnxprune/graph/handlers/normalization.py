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
from ..channels import Channels
from ..index import GraphIndex
from ..registry import ChannelSpace, Effect, Handler, Outcome, Stop, register
from .common import const_input, on_axes, only_first_output_used, shape_of


class _PerChannelAffine(Handler):
    """Normalizes each channel on its own; ``sources``/``dependents`` are the parameter input ports."""

    sources: tuple[int, ...] = ()
    dependents: tuple[int, ...] = ()

    def transfer(
        self, ctx: GraphIndex, node: onnx.NodeProto, inputs: Sequence[Channels | None], space: ChannelSpace
    ) -> Outcome:
        x = inputs[0]
        if x is None:
            return Effect()
        if any(ch is not None for ch in inputs[1:]):
            return Stop(f"{node.op_type} {node.name!r} takes the channels as a parameter")
        params = {p: const_input(ctx, node, p) for p in (*self.sources, *self.dependents)}
        if any(v is None for v in params.values()) or not only_first_output_used(ctx, node):
            return Stop(f"{node.op_type} {node.name!r} is not in inference form with constant parameters")
        shape = shape_of(ctx, node.input[0], node)
        if isinstance(shape, Stop):
            return shape
        eff = Effect()
        ids, _ = on_axes(eff, node, x, shape, [1])
        for p in self.sources:
            eff.member(node, params[p] or "", 0, Role.SOURCE, ids)
        for p in self.dependents:
            eff.member(node, params[p] or "", 0, Role.DEPENDENT, ids)
        return eff.output(node.output[0], Channels.fresh(1, ids))


@register("BatchNormalization")
class BatchNormHandler(_PerChannelAffine):
    sources = (1, 2)
    dependents = (3, 4)


@register("InstanceNormalization")
class InstanceNormHandler(_PerChannelAffine):
    sources = (1, 2)


@register("LRN", "GroupNormalization", "LayerNormalization", "MeanVarianceNormalization", "LpNormalization")
class CrossChannelNorm(Handler):
    def transfer(
        self, ctx: GraphIndex, node: onnx.NodeProto, inputs: Sequence[Channels | None], space: ChannelSpace
    ) -> Outcome:
        if all(ch is None for ch in inputs):
            return Effect()
        return Stop(
            f"{node.op_type} {node.name!r} normalizes across channels: removing one changes the others"
        )
