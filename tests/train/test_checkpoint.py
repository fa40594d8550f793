"""Checkpoint and resume: an interrupted + resumed run ends where an uninterrupted one does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import helper

from onnxprune.errors import OutputError, SpecError
from onnxprune.graph.elements import Irregular
from onnxprune.train import checkpoint as ckpt
from onnxprune.train.admm import TrainConfig, TrainResult, run_admm, run_magnitude
from onnxprune.train.checkpoint import Checkpointer
from onnxprune.train.importer import ImportedModel, import_model

from . import graphs as G
from .test_admm import mlp_plan, split, teacher_labels


class Interrupted(Exception):
    """Stands for a killed job."""


def dropout_mlp() -> onnx.ModelProto:
    """mlp_matmul with a Dropout after the Relu: retraining draws from torch's RNG, which must resume too."""
    model = G.mlp_matmul(seed=2)
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    relu.output[0] = "r_pre"
    model.graph.node.insert(3, helper.make_node("Dropout", ["r_pre"], ["r"], name="drop"))
    return model


def data() -> tuple[Any, Any]:
    x = np.random.default_rng(7).standard_normal((80, 12)).astype(np.float32)
    return split(x, teacher_labels(G.mlp_matmul(seed=2), x), 64)  # 64 / 16 = 4 steps per epoch


def config(tmp: Path | None, **kw: Any) -> TrainConfig:
    # 2 ADMM epochs of 4 steps, rounds of 3 steps: rounds end mid-epoch (steps 3 and 6); 2 retraining epochs
    # the geometric schedule without extra rounds: a fixed count of rounds (the defaults: see below)
    base: dict[str, Any] = dict(
        admm_epochs=2, finetune_epochs=2, round_iters=3, batch_size=16, lr=0.01, rho0=0.5, quiet=True, seed=5,
        rho_schedule="geometric", max_extra_rounds=0,
    )  # fmt: skip
    return TrainConfig(checkpoint_dir=str(tmp) if tmp else None, **(base | kw))


def interrupt_after(monkeypatch: pytest.MonkeyPatch, saves: int) -> None:
    """Kill the run right after its ``saves``-th checkpoint is written."""
    original = Checkpointer.save
    count = {"n": 0}

    def save(self: Checkpointer, state: Any) -> None:
        original(self, state)
        count["n"] += 1
        if count["n"] == saves:
            raise Interrupted

    monkeypatch.setattr(Checkpointer, "save", save)


def run(cfg: TrainConfig, model: onnx.ModelProto | None = None) -> tuple[TrainResult, ImportedModel]:
    imported = import_model(model or dropout_mlp())
    train, val = data()
    return run_admm(imported, mlp_plan(), {"h": 3}, train, val, cfg), imported


@pytest.mark.parametrize("saves", [1, 2, 3, 4])  # mid ADMM epoch 0, mid epoch 1, after the prune, after ft 0
def test_resume_ends_with_the_same_masks_and_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, saves: int
) -> None:
    reference, ref_model = run(config(None))

    with monkeypatch.context() as m:
        interrupt_after(m, saves)
        with pytest.raises(Interrupted):
            run(config(tmp_path))
    resumed, model = run(config(tmp_path, resume=True))

    np.testing.assert_array_equal(resumed.masks["h"], reference.masks["h"])
    assert resumed.masks["h"].sum() == 3
    want, got = ref_model.onnx_arrays(), model.onnx_arrays()
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-7, err_msg=name)
    assert [h["phase"] for h in resumed.history] == [h["phase"] for h in reference.history]
    rounds = [(h["round"], h["step"], h["rho"]) for h in resumed.history if h["phase"] == "admm"]
    assert rounds == [(h["round"], h["step"], h["rho"]) for h in reference.history if h["phase"] == "admm"]
    assert len(rounds) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary left behind


@pytest.mark.parametrize("saves", [1, 3, 5])  # the round after 2 back-offs, an extra round, the prune
def test_resume_with_the_default_schedules_extra_rounds_and_guard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, saves: int
) -> None:
    # residual balancing, extra rounds to primal_tol and the loss guard (its state is checkpointed)
    kw: dict[str, Any] = dict(
        rho_schedule="balanced", max_extra_rounds=4, primal_tol=1e-6, loss_guard=1.2, lr=1.0
    )  # lr 1: the guard backs off the 2 regular rounds (the first save is the round after)
    reference, ref_model = run(config(None, **kw))
    end = reference.last("admm_end")
    assert end is not None and end["extra_rounds"] == 4 and end["guard_backoffs"] == 2
    with monkeypatch.context() as m:
        interrupt_after(m, saves)
        with pytest.raises(Interrupted):
            run(config(tmp_path, **kw))
    resumed, model = run(config(tmp_path, resume=True, **kw))
    np.testing.assert_array_equal(resumed.masks["h"], reference.masks["h"])
    want, got = ref_model.onnx_arrays(), model.onnx_arrays()
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-7, err_msg=name)
    keys = ("phase", "round", "step", "rho", "lr_scale")
    assert [[h.get(k) for k in keys] for h in resumed.history] == [
        [h.get(k) for k in keys] for h in reference.history
    ]


def test_checkpoint_holds_the_state_keyed_by_initializer_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as m:
        interrupt_after(m, 1)
        with pytest.raises(Interrupted):
            run(config(tmp_path))
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert (state["phase"], state["epoch"], state["done"], state["step"]) == ("admm", 0, 3, 3)
    assert state["rho"] == pytest.approx(0.5 * 1.3)
    assert set(state["z"]) == set(state["u"]) == {"w1", "b1"}
    assert set(state["weights"]) == set(import_model(dropout_mlp()).names)
    assert set(state["optimizer"]["state"]) <= set(state["weights"]) and state["optimizer"]["state"]
    assert state["fingerprint"]["batch_size"] == 16 and state["fingerprint"]["keep"] == "h=3"
    assert {"torch", "numpy", "python"} <= set(state["rng"])


def test_resuming_another_run_names_what_differs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as m:
        interrupt_after(m, 1)
        with pytest.raises(Interrupted):
            run(config(tmp_path))
    with pytest.raises(SpecError, match=r"different run: batch_size 16 in the checkpoint, 8 now"):
        run(config(tmp_path, resume=True, batch_size=8))
    with pytest.raises(SpecError, match=r"model [0-9a-f]{16} in the checkpoint"):
        run(config(tmp_path, resume=True), G.mlp_matmul(seed=9))
    imported = import_model(dropout_mlp())
    train, val = data()
    with pytest.raises(SpecError, match="method admm in the checkpoint, magnitude now"):
        run_magnitude(imported, mlp_plan(), {"h": 3}, train, val, config(tmp_path, resume=True))
    with pytest.raises(SpecError, match="keep h=3 in the checkpoint, h=2 now"):
        run_admm(imported, mlp_plan(), {"h": 2}, train, val, config(tmp_path, resume=True))


def test_a_failed_write_leaves_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saver = Checkpointer(tmp_path, {"seed": 1})
    saver.save({"phase": "finetune", "epoch": 1})
    before = (tmp_path / "checkpoint.pt").read_bytes()

    def broken(obj: Any, f: Any) -> None:
        Path(f).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", broken)
    with pytest.raises(OutputError, match=r"cannot write checkpoint .*No space left"):
        saver.save({"phase": "finetune", "epoch": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    monkeypatch.undo()
    assert Checkpointer(tmp_path, {"seed": 1}).load()["epoch"] == 1  # type: ignore[index]


def test_unreadable_checkpoint_and_resume_without_directory(tmp_path: Path) -> None:
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SpecError, match="cannot read checkpoint"):
        Checkpointer(tmp_path, {}).load()
    with pytest.raises(SpecError, match="resume needs a checkpoint directory"):
        config(None, resume=True).validate()
    assert Checkpointer(tmp_path / "new", {}).load() is None  # nothing to resume: a fresh start


@pytest.mark.parametrize("saves", [2, 3])  # mid ADMM, after the prune
def test_resume_with_an_element_constraint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, saves: int
) -> None:
    """Element masks (here irregular on w2, 12 of 24 kept) are projected, checkpointed and restored too."""
    elements = {"w2": Irregular("w2", "mm2", "MatMul", (8, 3), axis=0, entries=12)}

    def run_el(cfg: TrainConfig) -> TrainResult:
        train, val = data()
        return run_admm(import_model(dropout_mlp()), mlp_plan(), {"h": 3}, train, val, cfg, elements)

    reference = run_el(config(None))
    with monkeypatch.context() as m:
        interrupt_after(m, saves)
        with pytest.raises(Interrupted):
            run_el(config(tmp_path))
    resumed = run_el(config(tmp_path, resume=True))

    assert resumed.element_masks["w2"].sum() == 12
    np.testing.assert_array_equal(resumed.element_masks["w2"], reference.element_masks["w2"])
    np.testing.assert_array_equal(resumed.masks["h"], reference.masks["h"])
