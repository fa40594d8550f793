"""CLI contract: one-line errors with a non-zero exit, no traceback, nothing written; a working run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper

from onnxprune.cli import main
from tests.builders import legacy_broadcast_cnn, legacy_model, vgg_like

NO_TRAINING = ["--method", "magnitude", "--finetune-epochs", "0", "--no-bench", "-q"]
PREVIEW = ["--data", "random", *NO_TRAINING]


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    path = tmp_path / "m.onnx"
    onnx.save(vgg_like(), str(path))
    return path


def run(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def assert_one_line_error(code: int, out: str, needle: str) -> None:
    assert code != 0
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out
    assert lines[0].startswith("error: ") or lines[0].startswith("Error: ")
    assert needle in lines[0], lines[0]
    assert "Traceback" not in out


def only_inputs_left(directory: Path, inputs: set[str]) -> None:
    assert {p.name for p in directory.iterdir()} == inputs


def test_preview_run_writes_pruned_and_masked(model_path: Path, tmp_path: Path) -> None:
    """Torch-free: the preview (magnitude, no fine-tuning) trains nothing."""
    out, masked, report = tmp_path / "p.onnx", tmp_path / "q.onnx", tmp_path / "r.json"
    code, text = run(
        [
            "compress",
            model_path,
            "-s",
            "filter:0.5",
            *PREVIEW,
            "-o",
            out,
            "--emit-masked",
            masked,
            "--report",
            report,
        ]
    )
    assert code == 0, text
    assert "PASS" in text
    pruned, dense = onnx.load(str(out)), onnx.load(str(masked))
    onnx.checker.check_model(pruned, full_check=True)
    assert pruned.ByteSize() < dense.ByteSize()
    data = json.loads(report.read_text())
    assert data["verification"]["passed"] and data["verification"]["max_rel_error"] <= 1e-4
    assert data["totals"]["macs_after"] < data["totals"]["macs_before"]
    assert [n.name for n in pruned.graph.node] == [n.name for n in onnx.load(str(model_path)).graph.node]


@pytest.mark.parametrize(
    ("content", "needle"),
    [(b"definitely not protobuf", "not a valid ONNX"), (None, "not a valid ONNX")],
    ids=["garbage", "truncated"],
)
def test_bad_model_file(tmp_path: Path, content: bytes | None, needle: str) -> None:
    bad = tmp_path / "bad.onnx"
    data = vgg_like().SerializeToString()
    bad.write_bytes(content if content is not None else data[: len(data) // 3])
    code, out = run(["compress", bad, "-s", "filter:0.5", *PREVIEW, "-o", tmp_path / "o.onnx"])
    assert_one_line_error(code, out, needle)
    only_inputs_left(tmp_path, {"bad.onnx"})


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("filter:1", "must be in [0, 1)"),
        ("filter:1.2", "must be in [0, 1)"),
        ("filter:-0.1", "must be in [0, 1)"),
        ("channel-ish:0.5", "unknown sparsity type"),
    ],
)
def test_bad_sparsity(model_path: Path, tmp_path: Path, spec: str, needle: str) -> None:
    code, out = run(["compress", model_path, "-s", spec, *PREVIEW, "-o", tmp_path / "o.onnx"])
    assert_one_line_error(code, out, needle)
    only_inputs_left(tmp_path, {"m.onnx"})


def test_missing_data_file(model_path: Path, tmp_path: Path) -> None:
    code, out = run(
        [
            "compress",
            model_path,
            "-s",
            "filter:0.5",
            "--data",
            tmp_path / "nope.npz",
            *NO_TRAINING,  # the data check comes before any training: the torch-free env runs it too
            "-o",
            tmp_path / "o.onnx",
        ]
    )
    assert_one_line_error(code, out, "not found")
    only_inputs_left(tmp_path, {"m.onnx"})


def test_missing_fashion_mnist_names_the_package(
    model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONNXPRUNE_FASHION_MNIST", str(tmp_path / "empty"))
    code, out = run(
        [
            "compress",
            model_path,
            "-s",
            "filter:0.5",
            "--data",
            "fashion-mnist",
            *NO_TRAINING,
            "-o",
            tmp_path / "o.onnx",
        ]
    )
    assert_one_line_error(code, out, "apt-get install -y dataset-fashion-mnist")


def test_data_shape_mismatch(model_path: Path, tmp_path: Path) -> None:
    npz = tmp_path / "d.npz"
    np.savez(npz, x=np.zeros((10, 1, 28, 28), np.float32), y=np.zeros(10, np.int64))
    code, out = run(
        ["compress", model_path, "-s", "filter:0.5", "--data", npz, *NO_TRAINING, "-o", tmp_path / "o.onnx"]
    )
    assert_one_line_error(code, out, "has samples of shape (1, 28, 28) but the model input is (?, 3, 8, 8)")
    only_inputs_left(tmp_path, {"m.onnx", "d.npz"})


def test_output_equal_to_input_is_refused(model_path: Path, tmp_path: Path) -> None:
    before = model_path.read_bytes()
    code, out = run(["compress", model_path, "-s", "filter:0.5", *PREVIEW, "-o", model_path])
    assert_one_line_error(code, out, "is the input model")
    assert model_path.read_bytes() == before


def test_unwritable_and_missing_output_directory(model_path: Path, tmp_path: Path) -> None:
    code, out = run(["compress", model_path, "-s", "filter:0.5", *PREVIEW, "-o", "/proc/pruned.onnx"])
    assert_one_line_error(code, out, "not writable")
    code, out = run(["compress", model_path, "-s", "filter:0.5", *PREVIEW, "-o", tmp_path / "no" / "p.onnx"])
    assert_one_line_error(code, out, "does not exist")
    only_inputs_left(tmp_path, {"m.onnx"})


def test_dynamic_dims_need_input_shape(tmp_path: Path) -> None:
    model = vgg_like()
    for d in model.graph.input[0].type.tensor_type.shape.dim[2:]:
        d.dim_param = "side"
    path = tmp_path / "dyn.onnx"
    onnx.save(model, str(path))
    code, out = run(["compress", path, "-s", "filter:0.5", *PREVIEW, "-o", tmp_path / "o.onnx"])
    assert_one_line_error(code, out, "--input-shape")


def test_inspect_lists_groups_and_reasons(model_path: Path) -> None:
    code, out = run(["inspect", model_path, "--groups"])
    assert code == 0
    assert "4 of 5 channel groups prunable" in out
    assert "graph output" in out
    code, out = run(["inspect", model_path, "--json"])
    assert json.loads(out)["prunable_groups"] == 4


def test_inspect_bad_file_in_a_real_process(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_text("nope")
    proc = subprocess.run(
        [sys.executable, "-m", "onnxprune", "inspect", str(bad)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_bench_cli_writes_json(model_path: Path, tmp_path: Path) -> None:
    js = tmp_path / "b.json"
    code, out = run(
        ["bench", model_path, model_path, "--batch", "1", "--repeats", "3", "--warmup", "1", "--json", js]
    )
    assert code == 0, out
    assert len(json.loads(js.read_text())["results"]) == 2


@pytest.mark.torch
def test_checkpoint_resume_and_mismatch(model_path: Path, tmp_path: Path) -> None:
    ckpt, out = tmp_path / "ckpt", tmp_path / "p.onnx"
    train = ["--data", "random", "--max-samples", "48", "--admm-epochs", "1", "--finetune-epochs", "1"]
    train += ["--round-iters", "1", "--batch-size", "16", "--no-bench", "-q", "-s", "filter:0.5"]
    code, text = run(["compress", model_path, *train, "-o", out, "--checkpoint-dir", ckpt])
    assert code == 0, text
    assert {p.name for p in ckpt.iterdir()} == {"checkpoint.pt"}
    first = onnx.load(str(out))
    # resuming a finished run redoes nothing of the training and writes the same model
    code, text = run(
        ["compress", model_path, *train, "-o", out, "--checkpoint-dir", ckpt, "--resume", "--force"]
    )
    assert code == 0, text
    again = onnx.load(str(out))
    for a, b in zip(first.graph.initializer, again.graph.initializer, strict=True):
        np.testing.assert_array_equal(onnx.numpy_helper.to_array(a), onnx.numpy_helper.to_array(b))
    code, text = run(
        [
            "compress",
            model_path,
            *train,
            "--seed",
            "3",
            "-o",
            out,
            "--checkpoint-dir",
            ckpt,
            "--resume",
            "--force",
        ]
    )
    assert_one_line_error(code, text, "from a different run")
    code, text = run(["compress", model_path, *train, "-o", out, "--resume", "--force"])
    assert_one_line_error(code, text, "resume needs a checkpoint directory")


@pytest.mark.torch
@pytest.mark.slow
def test_torchrun_two_processes(model_path: Path, tmp_path: Path) -> None:
    """The documented command: rank 0 alone writes the model and report; a bad option fails on each rank."""
    from tests.train.test_distributed import free_port

    out, report = tmp_path / "p.onnx", tmp_path / "r.json"
    args = ["-m", "onnxprune", "compress", str(model_path), "-s", "filter:0.5", "--data", "random", "-q"]
    args += ["--max-samples", "48", "--admm-epochs", "1", "--finetune-epochs", "1", "--round-iters", "2"]
    args += ["--no-bench", "-o", str(out), "--report", str(report)]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def launch(*extra: str) -> subprocess.CompletedProcess[str]:
        cmd = [*torchrun, "--master_port", str(free_port()), *args, *extra]
        return subprocess.run(cmd, capture_output=True, text=True, check=False, env=env, timeout=240)

    proc = launch("--batch-size", "16")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("wrote ") == 1  # one summary, from rank 0
    assert json.loads(report.read_text())["verification"]["passed"]
    proc = launch("--batch-size", "15", "--force")
    assert proc.returncode != 0
    errors = sorted(line for line in proc.stderr.splitlines() if line.startswith("error: "))
    assert errors == [f"error: [rank {r}] batch_size 15 is not divisible by the 2 processes" for r in (0, 1)]


@pytest.mark.torch
def test_legacy_broadcast_graph_prunes_and_verifies(tmp_path: Path) -> None:
    """benchmarks/repro/legacy_broadcast.py (opset 6, Mul/Add with broadcast=1, axis=1) at filter:0.5:
    lifted with the per-channel constants reshaped, pruned, and pruned == masked."""
    src, out, report = tmp_path / "m.onnx", tmp_path / "p.onnx", tmp_path / "r.json"
    onnx.save(legacy_broadcast_cnn(), str(src))
    code, text = run(["compress", src, "-s", "filter:0.5", *PREVIEW, "-o", out, "--report", report])
    assert code == 0, text
    data = json.loads(report.read_text())
    assert data["verification"]["passed"] and data["verification"]["max_rel_error"] <= 1e-4
    pruned = onnx.load(str(out))
    onnx.checker.check_model(pruned, full_check=True)
    assert {t.name: t.dims[0] for t in pruned.graph.initializer}["s"] == 4  # 8 channels, half kept


@pytest.mark.torch
def test_model_ort_refuses_is_a_one_line_error(tmp_path: Path) -> None:
    """A model onnx's checker accepts but ONNX Runtime refuses (float + int64 Add): one line, exit 2."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Add", ["c", "ids"], ["y"])]
    inits = {"w": np.ones((2, 3, 1, 1), dtype=np.float32), "ids": np.ones((2, 1, 1), dtype=np.int64)}
    model = legacy_model(nodes, inits, (1, 3, 4, 4), (1, 2, 4, 4), opset=13)
    src = tmp_path / "m.onnx"
    onnx.save(model, str(src))
    code, text = run(["compress", src, "-s", "filter:0.5", *PREVIEW, "-o", tmp_path / "p.onnx"])
    assert code == 2
    assert_one_line_error(code, text, "ONNX Runtime cannot load the model")
    only_inputs_left(tmp_path, {"m.onnx"})
