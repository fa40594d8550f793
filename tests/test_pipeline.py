"""compress() end to end on tiny graphs: structure, verification, report, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from onnxprune import compress
from onnxprune.errors import SpecError
from onnxprune.graph.verify import compare_models
from onnxprune.pipeline import TrainOptions
from onnxprune.plan import keep_count
from tests.builders import preview, vgg_like, write_labeled_npz

QUICK = TrainOptions(admm_epochs=1, finetune_epochs=1, batch_size=32, round_iters=2)


@pytest.fixture(scope="module")
def labeled_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_labeled_npz(tmp_path_factory.mktemp("d") / "d.npz", samples=192, channels=3)


@pytest.mark.torch
def test_admm_on_labeled_data(labeled_npz: Path, tmp_path: Path) -> None:
    result = compress(
        vgg_like(),
        "filter:0.5",
        str(labeled_npz),
        tmp_path / "p.onnx",
        train=QUICK,
        emit_masked=tmp_path / "m.onnx",
        report_path=tmp_path / "r.json",
        bench_batches=(1,),
        bench_repeats=3,
        quiet=True,
    )
    r = result.report
    assert r.verification.passed
    assert r.accuracy is not None and r.accuracy["dense_top1"] is not None
    assert r.totals["conv_macs_after"] < r.totals["conv_macs_before"]
    assert r.history["admm"], "ADMM rounds are logged"
    assert all("primal" in e and "rho" in e for e in r.history["admm"])
    for g in result.plan.prunable:
        assert result.masks[g.name].sum() == keep_count(g.channels, 0.5)
    saved = onnx.load(str(tmp_path / "p.onnx"))
    masked = onnx.load(str(tmp_path / "m.onnx"))
    x = np.random.default_rng(5).random((4, 3, 8, 8)).astype(np.float32)
    assert compare_models(masked, saved, [x]).max_rel_error <= 1e-4
    assert (tmp_path / "r.json").exists()
    assert r.latency is not None and r.latency["speedups"][0]["batch"] == 1


@pytest.mark.torch
def test_same_seed_same_masks(labeled_npz: Path) -> None:
    runs = [
        compress(
            vgg_like(), "filter:0.5", str(labeled_npz), train=QUICK, seed=7, bench_batches=(), quiet=True
        )
        for _ in range(2)
    ]
    for name, keep in runs[0].masks.items():
        np.testing.assert_array_equal(keep, runs[1].masks[name])
    a, b = (r.model.graph.initializer for r in runs)
    for ta, tb in zip(a, b, strict=True):
        np.testing.assert_array_equal(onnx.numpy_helper.to_array(ta), onnx.numpy_helper.to_array(tb))


@pytest.mark.torch
def test_magnitude_preview_needs_no_training() -> None:
    result = preview(vgg_like(), "filter:0.7")
    assert result.report.verification.passed
    kept = {g["node"]: g["kept"] for g in result.report.groups}
    assert kept["Conv4"] == 2  # round(8 * 0.3)


@pytest.mark.torch
def test_zero_sparsity_keeps_structure() -> None:
    model = vgg_like()
    result = preview(model, "filter:0")
    assert [tuple(t.dims) for t in result.model.graph.initializer] == [
        tuple(t.dims) for t in model.graph.initializer
    ]


def test_unknown_method() -> None:
    with pytest.raises(SpecError, match="unknown method"):
        compress(vgg_like(), "filter:0.5", "random", method="lottery")


def test_params_before_count_a_shared_weight_once() -> None:
    """The normalizer gives each reader of a shared initializer its own copy; the report counts the
    model as given (each initializer once), and the pruned model shares the weight again."""
    model = vgg_like()
    g = model.graph
    first = g.node[0]
    assert first.op_type == "Conv"
    twin = onnx.helper.make_node("Conv", list(first.input), ["twin_out"], name="twin", pads=[1, 1, 1, 1])
    for attr in first.attribute:
        if attr.name != "pads":
            twin.attribute.append(attr)
    summed = onnx.helper.make_node("Add", [first.output[0], "twin_out"], ["summed"], name="summed")
    for n in g.node[1:]:
        n.input[:] = ["summed" if i == first.output[0] else i for i in n.input]
    g.node.insert(1, twin)
    g.node.insert(2, summed)
    onnx.checker.check_model(model, full_check=True)
    floats = sum(int(np.prod(t.dims)) for t in g.initializer if t.data_type == onnx.TensorProto.FLOAT)

    result = preview(model)

    assert result.report.totals["params_before"] == floats
    names = [t.name for t in result.model.graph.initializer]
    assert len(names) == len(set(names)) and not any("__" in n for n in names)


@pytest.mark.torch
def test_retraining_the_pruned_model_is_masked_retraining(labeled_npz: Path) -> None:
    """Retraining the physically pruned model (the default) takes the steps masked retraining takes: the
    same losses, and the written model reproduces its masked dense model."""
    runs = {
        where: compress(
            vgg_like(),
            "filter:0.5",
            str(labeled_npz),
            # the same dense ADMM phase on both sides: only the retraining differs
            train=QUICK.merged(TrainOptions(finetune_epochs=2, retrain_on=where, admm_on="dense")),
            bench_batches=(),
            quiet=True,
        )
        for where in ("auto", "masked")
    }
    assert runs["auto"].report.config["retrain_on"] == "pruned"
    assert runs["masked"].report.config["retrain_on"] == "masked (--retrain-on masked)"
    losses = {w: [e["train_loss"] for e in r.report.history["finetune"]] for w, r in runs.items()}
    assert len(losses["auto"]) == 2 and np.allclose(losses["auto"], losses["masked"], rtol=1e-3), losses
    x = np.random.default_rng(2).random((4, 3, 8, 8)).astype(np.float32)
    for r in runs.values():
        assert r.report.verification.passed and r.masked is not None
        assert compare_models(r.masked, r.model, [x]).max_rel_error <= 1e-4
    assert compare_models(runs["auto"].model, runs["masked"].model, [x]).max_rel_error <= 1e-2


@pytest.mark.torch
def test_element_sparsity_retrains_masked(labeled_npz: Path) -> None:
    result = compress(
        vgg_like(), "irregular:0.5", str(labeled_npz), train=QUICK, bench_batches=(), quiet=True
    )
    assert result.report.config["retrain_on"] == "masked (element or shape sparsity keeps the dense layout)"
    with pytest.raises(SpecError, match=r"^--retrain-on pruned: element or shape sparsity keeps the dense"):
        compress(
            vgg_like(),
            "irregular:0.5",
            str(labeled_npz),
            train=QUICK.merged(TrainOptions(retrain_on="pruned")),
            bench_batches=(),
            quiet=True,
        )


@pytest.mark.torch
def test_an_epoch_budget_splits_across_the_surgery(labeled_npz: Path) -> None:
    """--epochs N: ADMM trains N//2 epochs on the dense model, retraining the rest on the pruned one."""
    result = compress(
        vgg_like(),
        "filter:0.5",
        str(labeled_npz),
        train=TrainOptions(epochs=3, batch_size=32, round_iters=2),
        bench_batches=(),
        quiet=True,
    )
    r = result.report
    assert r.config["retrain_on"] == "pruned" and (r.config["admm_epochs"], r.config["finetune_epochs"]) == (
        1,
        2,
    )
    assert len(r.history["admm_epoch"]) == 1 and len(r.history["finetune"]) == 2 and r.verification.passed
