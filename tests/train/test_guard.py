"""The loss guard: the first ADMM rounds never raise a trained model's task loss above twice the dense."""

from __future__ import annotations

import numpy as np

from onnxprune.train.admm import TrainConfig, TrainResult, run_admm, run_magnitude
from onnxprune.train.importer import ImportedModel, import_model

from . import graphs as G
from .test_admm import FAST, mlp_plan, split, teacher_labels


def trained_mlp() -> tuple[ImportedModel, tuple]:
    """G.mlp_matmul trained (dense: nothing pruned) to a low loss on labels a ReLU MLP can fit (the argmax
    of its own initial outputs: 3 classes, a non-linear boundary)."""
    x = np.random.default_rng(0).standard_normal((256, 12)).astype(np.float32)
    data = split(x, teacher_labels(G.mlp_matmul(seed=1), x), 192)
    model = import_model(G.mlp_matmul(seed=1))
    # keep all 8 channels: no group is pruned, masked retraining is plain training
    cfg = TrainConfig(finetune_epochs=20, finetune_lr=0.02, **FAST)
    result = run_magnitude(model, mlp_plan(), {"h": 8}, *data, cfg)
    assert result.last("finetune")["train_loss"] < 0.15  # type: ignore[index]  # from 0.43 untrained
    return model, data


ISSUE_20 = dict(loss_guard=2.0, lr_schedule="warmup-cosine", rho_schedule="balanced", rho_max=10.0)


def admm(model: ImportedModel, data: tuple, **kw: object) -> TrainResult:
    base = dict(admm_epochs=10, finetune_epochs=0, round_iters=6, lr=1.0, guard_rounds=4, max_extra_rounds=0)
    base |= ISSUE_20  # the guard is opt-in: these tests switch the issue-20 W-step and penalty on
    # lr 1.0: deliberately far too large for Adam on a trained model
    return run_admm(model, mlp_plan(), {"h": 4}, *data, TrainConfig(**(FAST | base | kw)))


def test_a_huge_lr_triggers_the_guard_and_the_first_rounds_stay_under_twice_the_dense_loss() -> None:
    model, data = trained_mlp()
    start = {n: model.tensor(n).detach().clone() for n in model.names}
    guarded = admm(model, data)

    end = guarded.last("admm_end")
    assert end is not None and end["guard_backoffs"] > 0 and end["lr_scale"] < 1
    dense = end["dense_loss"]
    assert 0 < dense < 0.15  # the model is trained
    backoffs = [h for h in guarded.history if h["phase"] == "guard"]
    assert len(backoffs) == end["guard_backoffs"]
    assert all(h["limit"] == 2 * dense for h in backoffs)
    assert all(max(h["guard_loss"], h["task_loss"]) > 2 * dense for h in backoffs)  # each one ran away
    assert [h["lr_scale"] for h in backoffs] == [0.5**k for k in range(1, len(backoffs) + 1)]
    first = [h for h in guarded.history if h["phase"] == "admm"][:4]
    assert len(first) == 4
    # the acceptance: over its steps and at its end, no early round is above twice the dense loss
    assert all(h["task_loss"] <= 2 * dense and h["guard_loss"] <= 2 * dense for h in first)

    # the same run without the guard: the task loss runs away (what the guard prevents)
    for n, t in start.items():
        model.tensor(n).data.copy_(t)
    unguarded = admm(model, data, loss_guard=0.0)
    assert unguarded.last("admm_end")["guard_backoffs"] == 0  # type: ignore[index]
    rounds = [h for h in unguarded.history if h["phase"] == "admm"][:4]
    assert min(h["task_loss"] for h in rounds) > 2 * dense


def test_a_backed_off_round_restores_the_weights_of_its_start() -> None:
    model, data = trained_mlp()
    start = {"w2": model.tensor("w2").detach().clone()}  # a DEPENDENT: the hard prune leaves it
    # one round of 6 steps (one epoch), no extra rounds: it ran away and was backed off, nothing was kept
    result = admm(model, data, admm_epochs=1, guard_rounds=1)
    assert [h["phase"] for h in result.history if h["phase"] in ("admm", "guard")] == ["guard"]
    for n, t in start.items():
        np.testing.assert_array_equal(model.tensor(n).detach().numpy(), t.numpy(), err_msg=n)
