"""OpenVINO beside ONNX Runtime (the optional extra ``openvino``): its outputs, ``bench`` and ``profile``
rows, the ``openvino:B`` latency target and its cache key, and the one-line error where it is missing.
Everything but the missing-extra tests is skipped where openvino is not installed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from onnxprune.config.alignment import auto_alignment
from onnxprune.extras import NO_OPENVINO
from onnxprune.runtime.latency import LatencyCache, Target, parse_target
from tests.builders import vgg_like
from tests.test_cli import PREVIEW, assert_one_line_error, run
from tests.test_export_stage import cli_hidden, hidden

ROOT = Path(__file__).resolve().parents[1]
VGG = ROOT / "models" / "fmnist_vgg.onnx"


@pytest.fixture
def ov():
    return pytest.importorskip("openvino")


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    path = tmp_path / "m.onnx"
    onnx.save(vgg_like(), str(path))
    return path


def test_outputs_match_onnx_runtime_on_the_vgg_reference(ov) -> None:
    from onnxprune.runtime.openvino import run_openvino

    x = np.random.default_rng(1).standard_normal((4, 1, 28, 28)).astype(np.float32)
    ours = run_openvino(VGG, {"input": x}, threads=1)
    sess = ort.InferenceSession(str(VGG), providers=["CPUExecutionProvider"])
    (ref,) = sess.run(None, {"input": x})
    assert list(ours) == [o.name for o in sess.get_outputs()]
    # f32 inference (no bf16 downcast): the same numbers as ORT up to summation order
    np.testing.assert_allclose(ours["logits"], ref, rtol=1e-4, atol=1e-4)


def test_threads_and_f32_precision_are_honoured(ov) -> None:
    from onnxprune.runtime.openvino import compile_model

    compiled = compile_model(VGG, threads=1, shapes={"input": (2, 1, 28, 28)})
    assert int(compiled.get_property("INFERENCE_NUM_THREADS")) == 1
    assert compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32
    assert [tuple(i.get_shape()) for i in compiled.inputs] == [(2, 1, 28, 28)]  # static: the timed shape


def test_bench_has_openvino_rows_beside_ort(ov, model_path: Path) -> None:
    from onnxprune.runtime.benchmark import bench
    from tests.builders import preview

    pruned = preview(vgg_like(), "filter:0.5").model
    report = bench([model_path, pruned], batch_sizes=(2,), threads=1, warmup=1, repeats=2,
                   runtimes=("ort", "openvino"), names=["dense", "pruned"])  # fmt: skip
    rows = [r for r in report.rows if r.runtime == "openvino"]
    assert [(r.model, r.provider, r.batch) for r in rows] == [("dense", "cpu", 2), ("pruned", "cpu", 2)]
    assert all(r.median_ms > 0 and r.runs == 2 for r in rows) and rows[0].speedup == 1.0
    assert report.row("pruned", "cpu", 2, "openvino").speedup > 0
    assert {r.runtime for r in report.rows} == {"ort", "openvino"}
    assert report.settings["openvino"] == ov.__version__ and report.settings["threads"] == 1
    assert "openvino" in report.format_table()


def test_bench_cli_openvino_and_its_provider_error(ov, model_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    args = ["bench", model_path, "--runtime", "openvino", "--batch", "1", "--repeats", "2", "--warmup", "1"]
    code, text = run([*args, "--threads", "1", "--json", out])
    assert code == 0, text
    saved = json.loads(out.read_text())
    assert [(r["runtime"], r["provider"]) for r in saved["results"]] == [("openvino", "cpu")]
    code, text = run([*args, "--provider", "cuda"])
    assert_one_line_error(code, text, "runs on the cpu only")


def test_openvino_target_key_differs_from_the_ort_one(ov, tmp_path: Path) -> None:
    on = parse_target("openvino:32", threads=2)
    assert on == Target("openvino", 32, 2) and str(on) == "openvino:32"
    assert (on.backend.runtime, on.backend.device) == ("openvino", "cpu")
    key, ort_key = on.key(), Target("cpu", 32, 2).key()
    assert key != ort_key and key["openvino"] == ov.__version__ and "onnxruntime" not in key
    assert key["device"] == ort_key["device"]  # the same CPU: only the runtime differs
    paths = {LatencyCache.open(t, tmp_path).path for t in (on, Target("cpu", 32, 2))}
    assert len(paths) == 2


def test_auto_alignment_for_openvino_is_the_cpu_block() -> None:
    assert auto_alignment("openvino", flags={"avx2", "avx512f"}).step == 16
    assert auto_alignment("openvino", flags={"avx2"}).step == 8
    assert "OpenVINO" in auto_alignment("openvino", flags={"avx2"}).reason


def test_latency_on_openvino_builds_and_caches_a_table(ov, model_path: Path, tmp_path: Path) -> None:
    out, cache = tmp_path / "t.json", tmp_path / "cache"
    args = ["latency", model_path, "--on", "openvino:1", "--threads", "1", "--points", "2", "--repeats", "2"]
    code, text = run([*args, "--align", "1", "--cache", cache, "--json", out])
    assert code == 0, text
    saved = json.loads(out.read_text())
    assert saved["target"] == "openvino:1" and saved["key"]["openvino"] == ov.__version__
    assert len(saved["layers"]) == 5 and saved["measured_entries"] > 0
    assert all(len(x["grid"]) >= 2 for x in saved["layers"])  # the narrow width and the full one
    assert saved["predicted_full_ms"] == pytest.approx(saved["measured_ms"])
    assert "whole model: measured" in text and "opt " not in text.splitlines()[0]  # ORT's setting only
    again = tmp_path / "again.json"
    code, text = run([*args, "--align", "1", "--cache", cache, "--json", again])
    assert code == 0, text
    assert json.loads(again.read_text())["measured_entries"] == 0  # the same target: all from the cache


def test_profile_names_openvino_nodes_after_the_onnx_nodes(ov) -> None:
    from onnxprune.runtime.profiling import profile

    report = profile([VGG], batch_sizes=(2,), threads=1, warmup=1, runs=2, runtime="openvino")
    (prof,) = report.profiles
    assert prof.provider == "openvino" and prof.run_median_us > 0
    model = onnx.load(str(VGG))
    convs = [n.name for n in model.graph.node if n.op_type in ("Conv", "Gemm")]
    names = [n.name for n in prof.nodes]
    assert all(c in names for c in convs), names  # a BatchNorm folded into its Conv shows as the Conv
    assert all(prof.node(c).median_us > 0 for c in convs)
    assert report.settings["runtime"] == "openvino"


@pytest.mark.torch
def test_compress_to_a_latency_on_openvino_measures_in_openvino(ov, model_path: Path, tmp_path: Path) -> None:
    out, report, cache = tmp_path / "p.onnx", tmp_path / "r.json", tmp_path / "cache"
    args = [
        "--target-latency",
        "1e9",
        "--on",
        "openvino:2",
        "--latency-threads",
        "1",
        "--latency-cache",
        cache,
    ]
    code, text = run(["compress", model_path, *args, "-o", out, "--report", report, *PREVIEW])
    assert code == 0, text
    saved = json.loads(report.read_text())
    assert saved["latency_budget"]["target"] == "openvino:2"
    measured = saved["latency"]["latency_target"]
    assert measured["runtime"] == "openvino" and measured["dense_ms"] > 0 and measured["pruned_ms"] > 0
    (entry,) = list(cache.glob("*.json"))
    assert json.loads(entry.read_text())["key"]["provider"] == "openvino"


@pytest.mark.parametrize(
    "args",
    [
        ["bench", "{m}", "--runtime", "openvino", "--repeats", "1"],
        ["profile", "{m}", "--runtime", "openvino", "--runs", "1"],
        ["latency", "{m}", "--on", "openvino:1"],
        ["compress", "{m}", "--target-speedup", "2", "--on", "openvino:1", "-o", "{o}", *PREVIEW],
    ],
)
def test_missing_openvino_is_one_line_naming_the_extra(args: list[str], model_path: Path) -> None:
    out = model_path.with_name("p.onnx")
    result = cli_hidden([a.format(m=model_path, o=out) for a in args], hide=("openvino",))
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode != 0 and lines == [f"error: {NO_OPENVINO}"], lines
    assert not out.exists()


def test_without_openvino_the_target_parses_to_the_extras_error() -> None:
    code = "from onnxprune.runtime.latency import parse_target\nparse_target('openvino:4')"
    result = hidden(code, hide=("openvino",))
    assert result.returncode != 0 and f"DependencyError: {NO_OPENVINO}" in result.stderr
