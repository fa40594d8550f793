"""Transformer blocks as torch's exporter writes them: pre-norm blocks with a hand-written attention
(separate or fused QKV projections, ``q @ kᵀ / √d`` or ``scaled_dot_product_attention`` with its scale
computed from ``Shape(q)``), ``nn.MultiheadAttention``, and an MLP with GELU in its Erf and tanh forms.
Heads and MLP units must be prunable groups, and pruned == masked on ORT."""

from __future__ import annotations

import functools
import io
import warnings

import onnx
import pytest

from onnxprune.graph.macs import count_costs
from tests.graph.checks import prune_check

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional

N, T, C, H = 2, 9, 32, 4
SHAPE = (N, T, C)


class _Attention(nn.Module):
    def __init__(self, fused: bool, sdpa: bool) -> None:
        super().__init__()
        self.fused, self.sdpa, self.d = fused, sdpa, C // H
        if fused:
            self.qkv = nn.Linear(C, 3 * C)
        else:
            self.q, self.k, self.v = nn.Linear(C, C), nn.Linear(C, C), nn.Linear(C, C)
        self.proj = nn.Linear(C, C)

    def forward(self, x):
        n, t, c = x.shape
        if self.fused:
            qkv = self.qkv(x).reshape(n, t, 3, H, self.d).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
        else:
            q, k, v = (m(x).view(n, t, H, self.d).transpose(1, 2) for m in (self.q, self.k, self.v))
        if self.sdpa:
            o = F.scaled_dot_product_attention(q, k, v)
        else:
            o = torch.softmax(q @ k.transpose(-2, -1) / self.d**0.5, dim=-1) @ v
        return self.proj(o.transpose(1, 2).reshape(n, t, c))


class _MHA(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.m = nn.MultiheadAttention(C, H, batch_first=True)

    def forward(self, x):
        return self.m(x, x, x, need_weights=False)[0]


class _Block(nn.Module):
    def __init__(self, attention: nn.Module, gelu: str) -> None:
        super().__init__()
        self.n1, self.n2, self.attn = nn.LayerNorm(C), nn.LayerNorm(C), attention
        self.mlp = nn.Sequential(nn.Linear(C, 4 * C), nn.GELU(approximate=gelu), nn.Linear(4 * C, C))
        self.head = nn.Linear(C, 5)

    def forward(self, x):
        x = x + self.attn(self.n1(x))
        x = x + self.mlp(self.n2(x))
        return self.head(x.mean(1))


@functools.cache
def _exported(kind: str, gelu: str, dynamic: bool) -> bytes:
    torch.manual_seed(0)
    attention = _MHA() if kind == "mha" else _Attention(fused="fused" in kind, sdpa="sdpa" in kind)
    block = _Block(attention, gelu).eval()
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            block,
            (torch.randn(*SHAPE),),
            f,
            dynamo=False,
            opset_version=17,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "n"}, "y": {0: "n"}} if dynamic else None,
        )
    return f.getvalue()


def exported(kind: str, gelu: str = "none", dynamic: bool = True) -> onnx.ModelProto:
    return onnx.load_from_string(_exported(kind, gelu, dynamic))


@pytest.mark.parametrize("kind", ["separate", "fused", "separate_sdpa", "fused_sdpa"])
@pytest.mark.parametrize("gelu", ["none", "tanh"])
def test_block_prunes_heads_and_mlp_units(kind: str, gelu: str) -> None:
    result = prune_check(exported(kind, gelu), SHAPE, seed=0)
    prunable = sorted(g.channels for g in result.plan.prunable)
    assert prunable == [H, 4 * C], result.plan.format()  # the heads, the MLP units; the stream stays
    heads = next(g for g in result.plan.prunable if g.channels == H)
    assert len(heads.source_nodes) == (1 if "fused" in kind else 3)
    assert result.max_rel_error <= 1e-5 and result.shrunk()
    before, after = (count_costs(m, SHAPE).total_macs for m in (result.model, result.pruned))
    assert before / after >= 1.9  # half the heads and half the units: every MatMul but the head halves


@pytest.mark.parametrize("dynamic", [False, True])
def test_multihead_attention_module_prunes_exactly(dynamic: bool) -> None:
    """nn.MultiheadAttention folds the heads into the batch axis (T, N·H, D), N·H computed from the
    dynamic batch: the split is pruned by head width D (each dim d of every head, in q, k and v),
    exactly. (Its shape arithmetic — ``shape[:2]`` of a dynamic-batch tensor, ``Mod`` of constants — is
    folded by normalization.)"""
    result = prune_check(exported("mha", dynamic=dynamic), SHAPE, seed=0)
    widths = sorted(g.channels for g in result.plan.prunable)
    assert widths == [C // H, 4 * C], result.plan.format()
    assert result.max_rel_error <= 1e-5 and result.shrunk()
