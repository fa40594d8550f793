"""The committed reference models: import round trip, plan, and a structure-only prune of each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from onnxprune.graph.analysis import analyze
from onnxprune.graph.edit import write_back
from onnxprune.graph.load import normalize
from onnxprune.graph.verify import compare_models, max_relative_error
from onnxprune.runtime.sessions import make_session, run_batched
from tests.builders import preview

MODELS = sorted((Path(__file__).resolve().parents[1] / "models").glob("*.onnx"))
SHAPE = (1, 1, 28, 28)


@pytest.fixture(params=MODELS, ids=[p.stem for p in MODELS])
def model(request: pytest.FixtureRequest) -> onnx.ModelProto:
    return normalize(onnx.load(str(request.param))).model


def inputs() -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 1, (16, 1, 28, 28)).astype(np.float32)


def test_import_round_trip_within_1e5(model: onnx.ModelProto) -> None:
    torch = pytest.importorskip("torch")
    from onnxprune.train.importer import import_model

    imported = import_model(model)
    x = inputs()
    ref = run_batched(make_session(model), x)[0]
    with torch.no_grad():
        got = imported.module.eval()(torch.from_numpy(x)).numpy()
    assert max_relative_error(ref, got) <= 1e-5
    rewritten = write_back(model, imported.onnx_arrays())
    assert compare_models(model, rewritten, [x]).max_rel_error <= 1e-5


def test_plan_prunes_uncoupled_layers_and_keeps_logits(model: onnx.ModelProto) -> None:
    plan = analyze(model, SHAPE)
    assert plan.prunable
    logits = [g for g in plan.groups if "graph output" in (g.reason or "")]
    assert len(logits) == 1
    for g in plan.groups:
        assert g.prunable or g.reason


def test_structure_only_prune_is_exact(model: onnx.ModelProto) -> None:
    pytest.importorskip("torch")
    result = preview(model)
    assert result.report.verification.max_rel_error <= 1e-4
    assert result.report.totals["conv_macs_after"] < result.report.totals["conv_macs_before"]
