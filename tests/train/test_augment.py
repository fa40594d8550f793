"""``augment``: random crop (zero padding) and horizontal flip of image batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from onnxprune.errors import SpecError
from onnxprune.train.admm import TrainConfig, run_admm
from onnxprune.train.augment import Augment, crop_padding, flip, random_crop
from onnxprune.train.importer import import_model

from . import graphs as G
from .test_admm import FAST, cnn_plan, mlp_plan, split, teacher_labels


def images(n: int = 16, h: int = 8, w: int = 8) -> torch.Tensor:
    return torch.randn(n, 2, h, w, generator=torch.Generator().manual_seed(0))


def test_off_by_default_and_identity_when_off() -> None:
    assert TrainConfig().augment == "" and not Augment(TrainConfig().augment)
    x = (images(),)
    assert Augment("")(x) is x


def test_augmentation_changes_inputs_but_keeps_shapes_and_leaves_other_inputs() -> None:
    torch.manual_seed(0)
    x, ids = images(), torch.arange(16)
    out, out_ids = Augment("crop,flip")((x, ids))
    assert out.shape == x.shape and out.dtype == x.dtype and not torch.equal(out, x)
    assert out_ids is ids  # not an image


def test_flip_twice_is_the_identity_and_flips_only_the_chosen_samples() -> None:
    x = images()
    which = torch.arange(16) % 2 == 0
    torch.testing.assert_close(flip(flip(x, which), which), x)
    once = flip(x, which)
    torch.testing.assert_close(once[which], x[which].flip(-1))
    torch.testing.assert_close(once[~which], x[~which])


def test_a_crop_is_a_shift_with_zero_fill() -> None:
    x = images(n=2, h=28, w=28)
    pad = crop_padding(28, 28)
    assert pad == 4 and crop_padding(8, 8) == 2 and crop_padding(224, 224) == 4
    centred = random_crop(x, torch.tensor([pad, pad]), torch.tensor([pad, pad]), pad)
    torch.testing.assert_close(centred, x)  # offset (p, p): the original window
    shifted = random_crop(x, torch.tensor([pad + 1, pad]), torch.tensor([pad, pad - 2]), pad)
    torch.testing.assert_close(shifted[0, :, :-1, :], x[0, :, 1:, :])  # sample 0: up by 1 row
    assert not shifted[0, :, -1, :].any()  # filled with zeros
    torch.testing.assert_close(shifted[1, :, :, 2:], x[1, :, :, :-2])  # sample 1: right by 2 columns
    assert not shifted[1, :, :, :2].any()


def test_a_run_with_augmentation_trains_and_an_mlp_is_refused() -> None:
    model = G.cnn(trans_b=0)
    x = np.random.default_rng(1).standard_normal((64, 2, 8, 8)).astype(np.float32)
    train, val = split(x, teacher_labels(model, x), 48)
    cfg = TrainConfig(admm_epochs=1, finetune_epochs=1, round_iters=1, augment="crop,flip", **FAST)
    result = run_admm(import_model(model), cnn_plan(), {"c1": 3}, train, val, cfg)
    assert result.masks["c1"].sum() == 3 and np.isfinite(result.last("finetune")["val_loss"])  # type: ignore[index]
    with pytest.raises(SpecError, match="unknown augmentation 'rotate'"):
        TrainConfig(augment="crop,rotate").validate()
    flat = np.random.default_rng(0).standard_normal((32, 12)).astype(np.float32)
    train, val = split(flat, teacher_labels(G.mlp_matmul(), flat), 24)
    with pytest.raises(SpecError, match="--augment needs an image input"):
        run_admm(
            import_model(G.mlp_matmul()),
            mlp_plan(),
            {"h": 4},
            train,
            val,
            TrainConfig(augment="flip", **FAST),
        )
