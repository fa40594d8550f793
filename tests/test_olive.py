"""The Olive pass (onnxprune.integrations.olive): runs where olive-ai is installed, skipped elsewhere."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.builders import vgg_like

olive = pytest.importorskip("olive")

from onnxprune.integrations.olive import PASS_TYPE, package_config, run_workflow  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _params(model: onnx.ModelProto) -> int:
    return sum(int(np.prod(t.dims)) for t in model.graph.initializer)


def _workflow(model: Path, out: Path, passes: dict) -> dict:
    return {
        "input_model": {"type": "ONNXModel", "model_path": str(model)},
        "passes": passes,
        "output_dir": str(out / "output"),
        "cache_dir": str(out / "cache"),
        "log_severity_level": 3,
    }


def test_package_config_keeps_olive_passes_and_adds_ours() -> None:
    passes = package_config()["passes"]
    assert passes[PASS_TYPE]["module_path"] == "onnxprune.integrations.olive.OnnxPrunePass"
    assert "OnnxStaticQuantization" in passes


def test_pass_prunes_and_verifies(tmp_path: Path) -> None:
    source = tmp_path / "vgg.onnx"
    onnx.save(vgg_like(), source)
    prune = {"type": PASS_TYPE, "sparsity": "filter:0.5", "method": "magnitude", "epochs": 0}
    run_workflow(_workflow(source, tmp_path, {"prune": prune}))
    out = tmp_path / "output" / "model.onnx"
    pruned = onnx.load(out)
    onnx.checker.check_model(pruned)
    assert _params(pruned) < _params(onnx.load(source))
    reports = list((tmp_path / "cache").rglob("*.report.json"))
    assert reports and json.loads(reports[0].read_text())["verification"]["passed"]


@pytest.mark.slow
def test_example_workflow_prunes_quantizes_and_times(tmp_path: Path) -> None:
    import sys

    from onnxprune.data import load_fashion_mnist
    from onnxprune.errors import DataError

    try:
        load_fashion_mnist()
    except DataError as error:  # the example reads Debian's Fashion-MNIST files
        pytest.skip(str(error))

    sys.path.insert(0, str(ROOT / "examples" / "olive"))
    try:
        import run as example
    finally:
        sys.path.pop(0)
    run_workflow(example.workflow(8, tmp_path))
    out = example.config_output(tmp_path)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["latency-avg"]["value"] > 0
    model = onnx.load(out / "model.onnx")
    assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    assert _params(model) < _params(onnx.load(ROOT / "models" / "fmnist_vgg.onnx"))


def test_missing_olive_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxprune.integrations.olive as integration
    from onnxprune.errors import DependencyError

    monkeypatch.setattr(integration, "installed", lambda module: module != "olive")
    monkeypatch.setattr(integration, "_PASS", None)
    with pytest.raises(DependencyError, match=r"pip install 'onnxprune\[olive\]'") as error:
        integration.OnnxPrunePass  # noqa: B018
    assert "\n" not in str(error.value)
