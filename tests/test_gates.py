"""Quality gates: checked before anything is written; a missed gate exits 4 with a one-line reason."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from onnxprune.config.gates import GateError, Gates, parse_speedup_on, raise_if_missed
from onnxprune.errors import SpecError
from tests.builders import vgg_like
from tests.test_cli import PREVIEW, assert_one_line_error, run

ACC = {"drop_pp": 1.5}
FID = {"fidelity": 0.97, "measure": "top-1 agreement"}
SPEED = [{"provider": "cpu", "batch": 1, "speedup": 2.0}, {"provider": "cpu", "batch": 32, "speedup": 1.2}]


@pytest.mark.parametrize(
    ("gates", "passed"),
    [
        (Gates(max_accuracy_drop=2.0), [True]),
        (Gates(max_accuracy_drop=1.0), [False]),
        (Gates(min_fidelity=0.97), [True]),
        (Gates(min_fidelity=0.98), [False]),
        (Gates(min_speedup=1.9), [True]),
        (Gates(min_speedup=1.9, speedup_batch=32), [False]),
        (Gates(max_accuracy_drop=2.0, min_fidelity=0.99, min_speedup=1.0), [True, False, True]),
    ],
)
def test_gate_decisions(gates: Gates, passed: list[bool]) -> None:
    results = gates.evaluate(ACC, FID, SPEED)
    assert [r.passed for r in results] == passed
    if all(passed):
        raise_if_missed(results)
    else:
        with pytest.raises(GateError, match="quality gate missed") as e:
            raise_if_missed(results)
        assert e.value.exit_code == 4


def test_a_gate_without_its_measurement_fails() -> None:
    results = Gates(min_speedup=1.0, speedup_provider="cuda").evaluate(ACC, FID, SPEED)
    assert not results[0].passed and results[0].value is None and "n/a" in results[0].detail


@pytest.mark.parametrize(
    ("gates", "labeled", "needle"),
    [
        (Gates(max_accuracy_drop=1.0), False, "needs labeled test data"),
        (Gates(max_accuracy_drop=-1.0), True, "must be >= 0"),
        (Gates(min_fidelity=1.5), True, r"must be in \[0, 1\]"),
        (Gates(min_speedup=0.0), True, "must be > 0"),
        (Gates(min_speedup=1.0, speedup_provider="cuda"), True, "lacks"),
    ],
)
def test_gates_that_cannot_be_evaluated_are_rejected_up_front(
    gates: Gates, labeled: bool, needle: str
) -> None:
    with pytest.raises(SpecError, match=needle):
        gates.validate(labeled, ["cpu"])


def test_parse_speedup_on() -> None:
    assert parse_speedup_on("cpu:1") == ("cpu", 1)
    assert parse_speedup_on("CUDA:32") == ("cuda", 32)
    for bad in ("cpu:x", ":4", "cpu:0"):
        with pytest.raises(SpecError, match="--speedup-on"):
            parse_speedup_on(bad)


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    path = tmp_path / "m.onnx"
    onnx.save(vgg_like(), str(path))
    return path


@pytest.mark.torch
def test_missed_speed_gate_writes_no_model_but_the_report(model_path: Path, tmp_path: Path) -> None:
    out, report = tmp_path / "p.onnx", tmp_path / "r.json"
    args = ["compress", model_path, "-s", "filter:0.5", "-o", out, "--report", report, *PREVIEW]
    code, text = run([*args, "--min-speedup", "1000", "--speedup-on", "cpu:2"])
    assert code == 4
    assert "error: quality gate missed: ORT cpu batch 2 speedup" in text and "(min 1000x)" in text
    assert "gate min_speedup:" in text and "FAIL" in text  # the summary is printed above the error
    assert not out.exists() and not list(tmp_path.glob("*.tmp*"))
    saved = json.loads(report.read_text())
    assert saved["gates"][0]["gate"] == "min_speedup" and not saved["gates"][0]["passed"]
    assert saved["latency"]["speedups"][0]["batch"] == 2  # --no-bench still times the gate's batch
    assert "model" not in saved["outputs"]


@pytest.mark.torch
def test_fidelity_gate_pass_and_fail(model_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.onnx"
    base = ["compress", model_path, "-s", "filter:0.9", "-o", out, *PREVIEW]
    code, text = run([*base, "--min-fidelity", "1.0"])
    assert code == 4 and "fidelity (top-1 agreement)" in text and not out.exists()
    code, text = run([*base, "--min-fidelity", "0.0"])
    assert code == 0 and out.exists() and "gate min_fidelity:" in text and "PASS" in text


def test_accuracy_gate_needs_labels(model_path: Path, tmp_path: Path) -> None:
    args = ["compress", model_path, "-s", "filter:0.5", "-o", tmp_path / "p.onnx", *PREVIEW]
    code, text = run([*args, "--max-accuracy-drop", "1"])
    assert_one_line_error(code, text, "needs labeled test data")


@pytest.mark.torch
def test_accuracy_gate_on_labeled_data(model_path: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"
    np.savez(data, x=rng.random((40, 3, 8, 8)).astype(np.float32), y=rng.integers(0, 4, 40))
    out = tmp_path / "p.onnx"
    args = ["compress", model_path, "-s", "filter:0.5", "-o", out, *PREVIEW[2:], "--data", data]
    code, text = run([*args, "--max-accuracy-drop", "100"])
    assert code == 0 and out.exists() and "gate max_accuracy_drop:" in text
