"""compress() on the data users have: no labels, image folders, IDX files, entry points, several inputs."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from onnxprune import compress
from onnxprune.data import load_fashion_mnist
from onnxprune.errors import DataError
from onnxprune.pipeline import TrainOptions
from tests.builders import GraphBuilder, vgg_like
from tests.graph.test_multi_input import image_and_gate, two_images_add
from tests.test_cli import run

QUICK = TrainOptions(admm_epochs=1, finetune_epochs=1, batch_size=32, round_iters=2)
REFERENCE = Path(__file__).resolve().parent.parent / "models" / "fmnist_vgg.onnx"


def _quiet(**kwargs: object) -> dict[str, object]:
    return {"train": QUICK, "bench_batches": (), "quiet": True, **kwargs}


def _same_result(a, b) -> None:  # two CompressResults
    assert a.masks.keys() == b.masks.keys()
    for name, keep in a.masks.items():
        np.testing.assert_array_equal(keep, b.masks[name])
    for ta, tb in zip(a.model.graph.initializer, b.model.graph.initializer, strict=True):
        assert ta.name == tb.name
        np.testing.assert_array_equal(onnx.numpy_helper.to_array(ta), onnx.numpy_helper.to_array(tb))
    assert a.report.fidelity == b.report.fidelity


@pytest.mark.torch
def test_labels_withheld_train_by_distillation_and_still_score(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.random((96, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=(x[:, 0, 0, 0] > 0.5).astype(np.int64))
    r = compress(vgg_like(), "filter:0.5", str(tmp_path / "d.npz"), labels=False, **_quiet()).report
    assert r.config["labels"] is False and "labels withheld" in r.data
    assert r.config["distill"]["loss"] == "auto"
    finetune = r.history["finetune"][-1]
    assert "val_agree" in finetune and "val_acc" not in finetune  # trained without labels
    assert r.accuracy is not None and r.accuracy["pruned_top1"] is not None  # scored with them
    assert r.fidelity["measure"] == "top-1 agreement" and 0 <= r.fidelity["agreement"] <= 1


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}i", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.mark.torch
@pytest.mark.slow
def test_image_folder_gives_the_idx_result(tmp_path: Path) -> None:
    """300 Fashion-MNIST test images as PNG class folders vs the same images, same order, as IDX files."""
    _, test = load_fashion_mnist()
    assert test.y is not None and isinstance(test.x, np.ndarray)
    pixels = np.round(test.x[:300, 0] * 255).astype(np.uint8)
    labels = test.y[:300]
    folder = tmp_path / "images"
    for i, (img, label) in enumerate(zip(pixels, labels, strict=True)):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img, mode="L").save(folder / str(label) / f"{i:04d}.png")
    order = np.lexsort((np.arange(300), labels))  # the folder's order: by class, then by file name
    _write_idx(tmp_path / "fm-images-idx3-ubyte.gz", pixels[order])
    _write_idx(tmp_path / "fm-labels-idx1-ubyte.gz", labels[order])

    runs = [
        compress(REFERENCE, "filter:0.5", source, **_quiet())
        for source in (str(folder), str(tmp_path / "fm-images-idx3-ubyte.gz"))
    ]
    _same_result(*runs)
    assert runs[0].report.accuracy is not None and runs[0].report.accuracy["samples"] == 30


@pytest.mark.torch
def test_entry_point_data_through_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "m.onnx"
    onnx.save(vgg_like(), str(model))
    (tmp_path / "my_data_ep.py").write_text(
        "import numpy as np, torch\n"
        "from torch.utils.data import DataLoader, TensorDataset\n"
        "def loaders():\n"
        "    g = np.random.default_rng(0)\n"
        "    x = torch.tensor(g.random((64, 3, 8, 8)), dtype=torch.float32)\n"
        "    y = torch.tensor(g.integers(0, 4, 64))\n"
        "    return {'train': DataLoader(TensorDataset(x[:48], y[:48]), batch_size=16),\n"
        "            'test': DataLoader(TensorDataset(x[48:], y[48:]), batch_size=16)}\n"
    )
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "p.onnx"
    args = ["compress", model, "-s", "filter:0.5", "-o", out, "--data", "my_data_ep:loaders", "--no-bench"]
    code, text = run([*args, "-q", "--admm-epochs", "1", "--finetune-epochs", "1", "--batch-size", "16"])
    assert code == 0, text
    assert out.exists() and "16 test samples" in text


@pytest.mark.torch
def test_two_image_inputs_end_to_end(tmp_path: Path) -> None:
    model, _, _ = two_images_add()
    rng = np.random.default_rng(1)
    a, b = rng.random((80, 3, 8, 8)).astype(np.float32), rng.random((80, 2, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "d.npz", input=a, b=b, y=rng.integers(0, 3, 80))
    result = compress(model, "filter:0.5", str(tmp_path / "d.npz"), **_quiet())
    r = result.report
    assert r.verification.passed and r.config["input_shape"] == {"input": [1, 3, 8, 8], "b": [1, 2, 8, 8]}
    tied = [g for g in result.plan.prunable if len(g.source_nodes) == 2]
    assert tied and result.masks[tied[0].name].sum() == 2  # the Add-tied convs lose the same 2 of 4
    assert r.totals["conv_macs_after"] < r.totals["conv_macs_before"]


@pytest.mark.torch
def test_image_and_int_input_from_python_arrays() -> None:
    model, _, _ = image_and_gate()
    rng = np.random.default_rng(2)
    data = {"input": rng.random((48, 3, 8, 8)).astype(np.float32), "t": rng.integers(0, 3, 48)}
    result = compress(model, "filter:0.5", data, **_quiet())
    assert result.report.verification.passed
    assert not result.report.config["labels"] and result.report.accuracy is None
    with pytest.raises(DataError, match=r"model inputs are \['input', 't'\] \(missing 't'\)"):
        compress(model, "filter:0.5", {"input": data["input"]}, **_quiet())


@pytest.mark.torch
def test_fidelity_of_a_non_classifier_is_the_relative_output_error() -> None:
    b = GraphBuilder((1, 3, 8, 8))
    model = b.build([b.conv(b.unary("Relu", b.conv("input", 6)), 4)])
    x = np.random.default_rng(3).random((40, 3, 8, 8)).astype(np.float32)
    r = compress(model, "filter:0.5", x, **_quiet()).report
    f = r.fidelity
    assert f["agreement"] is None and f["measure"] == "1 - relative output error"
    (err,) = f["output_rel_error"].values()
    assert f["fidelity"] == pytest.approx(1 - err) and 0 < err < 1
    assert r.config["distill"]["loss"] == "auto" and r.history["finetune"]  # mse on the feature map
