"""ADMM, hard pruning and masked retraining on tiny synthetic problems."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import helper

from onnxprune.data import ArrayData
from onnxprune.errors import SpecError, UnsupportedModelError
from onnxprune.plan import Group, IndexMap, Member, PruningPlan, Role, member_keep_indices, validate_masks
from onnxprune.train.admm import TrainConfig, run_admm, run_magnitude
from onnxprune.train.importer import ImportedModel, import_model
from onnxprune.train.projection import group_norms, topk_keep

from . import graphs as G

S, D = Role.SOURCE, Role.DEPENDENT


def mlp_plan() -> PruningPlan:
    hidden = Group(
        "h", "mm1", "MatMul", 8,
        [Member("w1", 1, S, "mm1"), Member("b1", 0, S, "add1"), Member("w2", 0, D, "mm2")],
    )  # fmt: skip
    return PruningPlan([hidden])


def cnn_plan() -> PruningPlan:
    c1 = Group(
        "c1", "conv1", "Conv", 6,
        [
            Member("c1.w", 0, S, "conv1"), Member("c1.b", 0, S, "conv1"), Member("bn.scale", 0, S, "bn1"),
            Member("bn.bias", 0, S, "bn1"), Member("bn.mean", 0, D, "bn1"), Member("bn.var", 0, D, "bn1"),
            Member("c2.w", 1, D, "conv2"),
        ],
    )  # fmt: skip
    flat = IndexMap(inner=16)  # Flatten of (4, 4, 4): channel c owns features [16c, 16c + 16) of fc.w axis 0
    c2 = Group(
        "c2", "conv2", "Conv", 4,
        [Member("c2.w", 0, S, "conv2"), Member("c2.b", 0, S, "conv2"), Member("fc.w", 0, D, "fc", flat)],
    )  # fmt: skip
    out = Group("y", "fc", "Gemm", 5, [Member("fc.w", 1, S, "fc")], reason="graph output")
    return PruningPlan([c1, c2, out])


def teacher_labels(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return G.run_ort(model, x).argmax(axis=1)


def split(x: np.ndarray, y: np.ndarray | None, n_train: int) -> tuple[ArrayData, ArrayData]:
    if y is None:
        return ArrayData(x[:n_train]), ArrayData(x[n_train:])
    return ArrayData(x[:n_train], y[:n_train]), ArrayData(x[n_train:], y[n_train:])


def physically_pruned(model: onnx.ModelProto, arrays: dict[str, np.ndarray], plan, masks) -> onnx.ModelProto:
    """Slice every member of every group along its axis (what surgery does for these graphs)."""
    out = {k: v.copy() for k, v in arrays.items()}
    for g in plan.groups:
        for m in g.members:
            a = out[m.initializer]
            out[m.initializer] = np.take(
                a, member_keep_indices(m, masks[g.name], a.shape[m.axis]), axis=m.axis
            )
    return G.with_initializers(model, out)


def source_slices_are_zero(imported: ImportedModel, plan: PruningPlan, masks) -> bool:
    arrays = imported.onnx_arrays()
    for g in plan.prunable:
        for m in g.sources:
            removed = m.index_map.indices(np.flatnonzero(~masks[g.name]))
            if np.take(arrays[m.initializer], removed, axis=m.axis).any():
                return False
    return True


FAST = dict(batch_size=32, quiet=True, seed=3)


def test_admm_converges_prunes_exactly_and_matches_physical_pruning():
    model = G.mlp_matmul(seed=1)
    x = np.random.default_rng(0).standard_normal((256, 12)).astype(np.float32)
    train, val = split(x, teacher_labels(model, x), 192)
    imported = import_model(model)
    plan = mlp_plan()
    cfg = TrainConfig(
        admm_epochs=48,
        finetune_epochs=2,
        lr=0.01,
        rho0=1.0,
        rho_growth=1.5,
        rho_max=5.0,
        round_iters=48,
        rho_schedule="geometric",  # the schedule this test pins down; residual balancing: test_penalty.py
        max_extra_rounds=0,
        **FAST,
    )
    result = run_admm(imported, plan, {"h": 3}, train, val, cfg)

    rounds = [h for h in result.history if h["phase"] == "admm"]
    assert len(rounds) == 48 * 6 // 48  # 6 steps per epoch
    primal = [r["primal_max"] for r in rounds]
    assert primal[-1] < 0.3 * primal[0], primal
    assert [r["rho"] for r in rounds] == pytest.approx([1.0, 1.5, 2.25, 3.375, 5.0, 5.0])  # capped at rho_max
    for key in ("task_loss", "primal", "primal_mean", "dual", "dual_max"):
        assert key in rounds[0]
    tuned = [h for h in result.history if h["phase"] == "finetune"]
    assert len(tuned) == 2 and all("val_acc" in h and "val_loss" in h for h in tuned)
    assert set(result.times) >= {"admm", "prune", "finetune", "total"}

    masks = result.masks
    validate_masks(plan, masks)
    assert masks["h"].dtype == np.bool_ and masks["h"].sum() == 3
    assert source_slices_are_zero(imported, plan, masks)
    assert (imported.tensor("w1")[:, masks["h"]] != 0).any()

    # masked dense (written back) == physically smaller model, in ONNX Runtime
    arrays = imported.onnx_arrays()
    masked = G.with_initializers(model, arrays)
    small = physically_pruned(model, arrays, plan, masks)
    assert small.graph.initializer[0].dims != model.graph.initializer[0].dims
    np.testing.assert_allclose(G.run_ort(small, val.x), G.run_ort(masked, val.x), rtol=1e-5, atol=1e-6)


def test_cnn_with_batchnorm_and_flatten_gemm():
    model = G.cnn(trans_b=0, alpha=1.0)
    x = np.random.default_rng(1).standard_normal((96, 2, 8, 8)).astype(np.float32)
    train, val = split(x, teacher_labels(model, x), 64)
    imported = import_model(model)
    plan = cnn_plan()
    cfg = TrainConfig(admm_epochs=2, finetune_epochs=1, round_iters=2, **FAST)
    result = run_admm(imported, plan, {"c1": 2, "c2": 3}, train, val, cfg)

    masks = result.masks
    assert set(masks) == {"c1", "c2", "y"} and masks["y"].all()
    assert masks["c1"].sum() == 2 and masks["c2"].sum() == 3
    assert source_slices_are_zero(imported, plan, masks)
    arrays = imported.onnx_arrays()
    assert not arrays["bn.scale"][~masks["c1"]].any() and not arrays["bn.bias"][~masks["c1"]].any()
    masked = G.with_initializers(model, arrays)
    small = physically_pruned(model, arrays, plan, masks)
    np.testing.assert_allclose(G.run_ort(small, val.x), G.run_ort(masked, val.x), rtol=1e-5, atol=1e-5)


def test_self_distillation_without_labels_keeps_bn_statistics():
    model = G.cnn()
    x = np.random.default_rng(2).standard_normal((64, 2, 8, 8)).astype(np.float32)
    train, val = split(x, None, 48)
    imported = import_model(model)
    mean_before = imported.onnx_array("bn.mean")
    cfg = TrainConfig(admm_epochs=1, finetune_epochs=1, round_iters=1, synthetic_data=True, **FAST)
    result = run_admm(imported, cnn_plan(), {"c1": 3}, train, val, cfg)

    assert result.masks["c1"].sum() == 3 and result.masks["c2"].all()
    finetune = result.last("finetune")
    assert finetune is not None and "val_loss" in finetune and "val_acc" not in finetune
    assert np.isfinite(finetune["val_loss"])
    np.testing.assert_array_equal(imported.onnx_array("bn.mean"), mean_before)  # random inputs: frozen
    assert source_slices_are_zero(imported, cnn_plan(), result.masks)


def test_magnitude_without_finetuning_only_zeroes_the_weakest_channels():
    model = G.cnn()
    x = np.random.default_rng(3).standard_normal((8, 2, 8, 8)).astype(np.float32)
    imported = import_model(model)
    plan = cnn_plan()
    before = imported.onnx_arrays()
    norms = group_norms(
        {n: imported.tensor(n) for n in imported.names}, plan.group("c1"), imported.torch_axis
    )
    result = run_magnitude(
        imported, plan, {"c1": 4}, ArrayData(x), ArrayData(x[:0]), TrainConfig(finetune_epochs=0)
    )

    keep = result.masks["c1"]
    assert keep.tolist() == topk_keep(norms, 4).tolist()
    assert [h["phase"] for h in result.history] == ["pruned"]
    sources = {m.initializer: m for m in plan.group("c1").sources}
    for name, after in imported.onnx_arrays().items():
        if name in sources:
            kept = np.take(after, np.flatnonzero(keep), axis=0)
            np.testing.assert_array_equal(kept, np.take(before[name], np.flatnonzero(keep), axis=0))
            assert not np.take(after, np.flatnonzero(~keep), axis=0).any()
        else:
            np.testing.assert_array_equal(after, before[name])


def test_same_seed_same_result():
    model = G.mlp_matmul()
    x = np.random.default_rng(4).standard_normal((64, 12)).astype(np.float32)
    train, val = split(x, teacher_labels(model, x), 48)
    cfg = TrainConfig(admm_epochs=1, finetune_epochs=1, round_iters=1, **FAST)
    runs = []
    for _ in range(2):
        imported = import_model(model)
        result = run_admm(imported, mlp_plan(), {"h": 4}, train, val, cfg)
        runs.append((result.masks["h"], imported.onnx_arrays()))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    for name in runs[0][1]:
        np.testing.assert_array_equal(runs[0][1][name], runs[1][1][name])


def test_dropout_off_during_admm_on_during_retraining():
    model = G.mlp_matmul()
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    relu.output[0] = "r_pre"
    model.graph.node.insert(3, helper.make_node("Dropout", ["r_pre"], ["r"], name="drop"))
    imported = import_model(model)
    seen: list[tuple[bool, bool]] = []
    drop = imported.module.get_submodule("drop")
    drop.register_forward_pre_hook(lambda mod, args: seen.append((mod.training, torch.is_grad_enabled())))
    x = np.random.default_rng(5).standard_normal((32, 12)).astype(np.float32)
    train, val = split(x, teacher_labels(G.mlp_matmul(), x), 16)
    run_admm(
        imported,
        mlp_plan(),
        {"h": 4},
        train,
        val,
        TrainConfig(admm_epochs=1, finetune_epochs=1, max_extra_rounds=0, **FAST),
    )
    steps = [training for training, grad in seen if grad]  # evaluation runs without grad
    assert steps == [False] * (len(steps) // 2) + [True] * (len(steps) // 2) and steps


def test_bad_requests():
    imported = import_model(G.cnn())
    plan = cnn_plan()
    data = ArrayData(np.zeros((4, 2, 8, 8), np.float32))
    cfg = TrainConfig(finetune_epochs=0)
    with pytest.raises(SpecError, match="no pruning group"):
        run_magnitude(imported, plan, {"nope": 1}, data, data, cfg)
    with pytest.raises(SpecError, match="cannot be pruned"):
        run_magnitude(imported, plan, {"y": 2}, data, data, cfg)
    with pytest.raises(SpecError, match=r"\[1, 6\]"):
        run_magnitude(imported, plan, {"c1": 0}, data, data, cfg)
    with pytest.raises(SpecError, match="rho"):
        run_magnitude(imported, plan, {"c1": 2}, data, data, TrainConfig(rho0=0.0))
    ghost = PruningPlan([Group("g", "n", "Conv", 6, [Member("ghost", 0, S, "n")])])
    with pytest.raises(UnsupportedModelError, match="ghost"):
        run_magnitude(imported, ghost, {"g": 2}, data, data, cfg)
    overlap = PruningPlan(
        [Group("a", "conv1", "Conv", 6, [Member("c1.w", 0, S, "conv1")]),
         Group("b", "conv1", "Conv", 3, [Member("c1.w", 0, S, "conv1", IndexMap(offset=3))])]
    )  # fmt: skip
    with pytest.raises(ValueError, match="share index 3"):
        run_magnitude(imported, overlap, {"a": 2, "b": 1}, data, data, cfg)
