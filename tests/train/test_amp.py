"""Mixed precision: autocast runs the training forward in low precision, the weights stay float32."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from onnxprune.errors import SpecError
from onnxprune.train.admm import TrainConfig, run_admm
from onnxprune.train.amp import Amp
from onnxprune.train.importer import import_model

from . import graphs as G
from .test_admm import mlp_plan, split, teacher_labels


def test_bf16_on_cpu_trains_in_bf16_and_keeps_float32_weights() -> None:
    model = G.mlp_matmul(seed=3)
    x = np.random.default_rng(2).standard_normal((64, 12)).astype(np.float32)
    train, val = split(x, teacher_labels(model, x), 48)
    seen: list[tuple[bool, torch.dtype]] = []
    results = {}
    for amp in ("off", "bf16"):
        imported = import_model(model)
        if amp == "bf16":
            mm = next(m for m in imported.module.modules() if type(m).__name__ == "OnnxMatMul")
            mm.register_forward_hook(lambda mod, args, out: seen.append((torch.is_grad_enabled(), out.dtype)))
        cfg = TrainConfig(admm_epochs=2, finetune_epochs=1, round_iters=2, batch_size=16, quiet=True, amp=amp)
        result = run_admm(imported, mlp_plan(), {"h": 4}, train, val, cfg)
        results[amp] = (result, imported.onnx_arrays())
    assert set(seen) == {(True, torch.bfloat16), (False, torch.float32)}  # training steps; evaluations
    result, arrays = results["bf16"]
    assert result.masks["h"].sum() == 4
    assert all(a.dtype == np.float32 for a in arrays.values())
    assert not np.array_equal(arrays["w1"], results["off"][1]["w1"])  # it did train differently


def test_fp16_needs_cuda_and_unknown_modes_fail() -> None:
    with pytest.raises(SpecError, match="amp fp16 needs device cuda"):
        TrainConfig(amp="fp16").validate()
    with pytest.raises(SpecError, match="amp must be one of off, bf16, fp16"):
        TrainConfig(amp="fp8").validate()


def test_fp16_loss_scaling_steps_and_state() -> None:
    """The GradScaler path (CUDA in real runs) on CPU: scaled backward, unscaled step, state round trip."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    amp = Amp("fp16", torch.device("cpu"))
    before = lin.weight.detach().clone()
    with amp.autocast():
        out = lin(torch.randn(8, 4))
    assert out.dtype == torch.float16
    loss = out.float().pow(2).mean()
    amp.backward(loss)
    assert lin.weight.grad is not None and amp.scaler is not None
    scaled = lin.weight.grad.clone()
    amp.step(opt)
    # the step used the unscaled gradient: Δw = -lr · grad / scale
    np.testing.assert_allclose(
        (before - lin.weight.detach()).numpy(), (0.1 * scaled / 2.0**16).numpy(), rtol=1e-2, atol=1e-6
    )
    state = amp.state_dict()
    assert state is not None and state["scale"] == 2.0**16
    other = Amp("fp16", torch.device("cpu"))
    other.load_state_dict({**state, "scale": 8.0})
    assert other.scaler is not None and other.scaler.get_scale() == 8.0
    assert Amp("bf16", torch.device("cpu")).state_dict() is None
