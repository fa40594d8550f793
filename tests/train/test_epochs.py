"""``epochs``: one total budget split between ADMM and retraining by a stated rule."""

from __future__ import annotations

import numpy as np
import pytest

from onnxprune.config.settings import TrainSettings
from onnxprune.errors import SpecError
from onnxprune.train.admm import TrainConfig, run_admm, run_magnitude
from onnxprune.train.importer import import_model

from . import graphs as G
from .test_admm import FAST, mlp_plan, split, teacher_labels


@pytest.mark.parametrize("n", range(0, 12))
def test_the_split_rule_spends_exactly_the_budget(n: int) -> None:
    admm, finetune = TrainSettings(epochs=n).split("admm")
    assert admm + finetune == n and admm == n // 2 and finetune - admm in (0, 1)  # odd epoch: retraining
    assert TrainSettings(epochs=n).split("magnitude") == (0, n)  # no ADMM phase: all retraining


def test_explicit_phase_options_win_and_must_agree_with_the_budget() -> None:
    assert TrainSettings().split("admm") == (2, 2)  # neither given: the defaults of before
    assert TrainSettings(admm_epochs=3).split("admm") == (3, 2)
    assert TrainSettings(epochs=10, admm_epochs=3).split("admm") == (3, 7)
    assert TrainSettings(epochs=10, finetune_epochs=4).split("admm") == (6, 4)
    assert TrainSettings(epochs=10, finetune_epochs=4).split("magnitude") == (6, 4)
    assert TrainSettings(epochs=10, admm_epochs=4, finetune_epochs=6).split("admm") == (4, 6)
    with pytest.raises(SpecError, match="--epochs 10 does not match --admm-epochs 4 \\+ --finetune-epochs 5"):
        TrainSettings(epochs=10, admm_epochs=4, finetune_epochs=5).validate()
    with pytest.raises(SpecError, match="exceeds --epochs 3"):
        TrainSettings(epochs=3, admm_epochs=4).validate()
    with pytest.raises(SpecError, match="exceeds --epochs 3"):
        TrainSettings(epochs=3, finetune_epochs=5).validate()


def test_a_run_trains_the_epochs_the_rule_gives() -> None:
    model = G.mlp_matmul(seed=1)
    x = np.random.default_rng(0).standard_normal((96, 12)).astype(np.float32)
    train, val = split(x, teacher_labels(model, x), 64)
    cfg = TrainConfig(epochs=3, round_iters=1, max_extra_rounds=0, **FAST)
    result = run_admm(import_model(model), mlp_plan(), {"h": 4}, train, val, cfg)
    phases = [h["phase"] for h in result.history]
    assert phases.count("admm_epoch") == 1 and phases.count("finetune") == 2
    result = run_magnitude(import_model(model), mlp_plan(), {"h": 4}, train, val, cfg)
    phases = [h["phase"] for h in result.history]
    assert "admm" not in phases and phases.count("finetune") == 3
