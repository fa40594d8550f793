"""DistributedDataParallel: 2 gloo processes train to what 1 process does with the same global batch."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from onnxprune.errors import SpecError
from onnxprune.train.admm import TrainConfig, run_admm
from onnxprune.train.distributed import Context, EpochBatches, permutation
from onnxprune.train.importer import import_model

from . import graphs as G
from .test_admm import mlp_plan, split, teacher_labels

# mlp_matmul has no BatchNorm: with BN each rank would normalize by its own half-batch statistics and
# the runs would differ by design. 69 training samples: the last global batch of 5 splits 3 + 2, which the
# loss weighting (EpochBatches.weight) must make equal to the 1-process mean.
N_TRAIN, BATCH = 69, 16


def problem() -> tuple[Any, Any]:
    x = np.random.default_rng(11).standard_normal((N_TRAIN + 16, 12)).astype(np.float32)
    return split(x, teacher_labels(G.mlp_matmul(seed=4), x), N_TRAIN)


def config(**kw: Any) -> TrainConfig:
    return TrainConfig(
        admm_epochs=2, finetune_epochs=1, round_iters=2, batch_size=BATCH, lr=0.01, rho0=0.5, quiet=True, **kw
    )


def train_once(out: Path, **kw: Any) -> None:
    """One process's run; saves its masks and weights to ``out`` (every rank, to compare them too)."""
    torch.set_num_threads(1)
    imported = import_model(G.mlp_matmul(seed=4))
    train, val = problem()
    result = run_admm(imported, mlp_plan(), {"h": 3}, train, val, config(**kw))
    rounds = np.array([h["task_loss"] for h in result.history if h["phase"] == "admm"])
    np.savez(out, mask=result.masks["h"], rounds=rounds, **imported.onnx_arrays())


def _worker(rank: int, world: int, port: int, tmp: str, kw: dict[str, Any]) -> None:
    stop = kw.pop("interrupt_after", None)
    if stop is not None:  # a killed job: rank 0 dies right after writing its ``stop``-th checkpoint
        from .test_checkpoint import interrupt_after

        interrupt_after(pytest.MonkeyPatch(), stop)
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    train_once(Path(tmp) / f"rank{rank}.npz", **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_processes_match_one(tmp_path: Path) -> None:
    mp.spawn(
        _worker, args=(2, free_port(), str(tmp_path), {"checkpoint_dir": str(tmp_path / "ck")}), nprocs=2
    )
    train_once(tmp_path / "single.npz")
    single, r0, r1 = (np.load(tmp_path / f"{n}.npz") for n in ("single", "rank0", "rank1"))

    for name in r0.files:  # the ranks agree exactly: DDP keeps W identical, Z/U/masks follow from W
        np.testing.assert_array_equal(r0[name], r1[name], err_msg=name)
    np.testing.assert_array_equal(r0["mask"], single["mask"])
    assert single["mask"].sum() == 3
    np.testing.assert_allclose(r0["rounds"], single["rounds"], rtol=1e-5)  # losses averaged over ranks
    for name in ("w1", "b1", "w2"):
        np.testing.assert_allclose(r0[name], single[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert [p.name for p in (tmp_path / "ck").iterdir()] == ["checkpoint.pt"]  # written by rank 0 only


def test_ranks_share_each_global_batch_of_the_single_process_order() -> None:
    one = EpochBatches(37, 8, seed=2, phase="admm", ctx=Context())
    two = [EpochBatches(37, 8, seed=2, phase="admm", ctx=Context(r, 2)) for r in range(2)]
    for s in (one, *two):
        s.set_epoch(3, skip=1)
    whole = list(one)
    halves = list(zip(*two, strict=True))
    assert len(whole) == len(halves) == 4  # batches 1..4 of 5; the last holds 5 samples (3 + 2)
    for batch, (a, b) in zip(whole, halves, strict=True):
        assert a + b == batch
    assert whole[0] == permutation(37, 2, "admm", 3)[8:16].tolist()
    assert permutation(37, 2, "admm", 3).tolist() != permutation(37, 2, "finetune", 3).tolist()
    assert two[0].weight(4, 3) == pytest.approx(3 * 2 / 5)
    with pytest.raises(SpecError, match="batch_size 8 is not divisible by the 3 processes"):
        EpochBatches(37, 8, seed=2, phase="admm", ctx=Context(0, 3))


@pytest.mark.slow
def test_two_processes_resume_from_an_interrupted_two_process_run(tmp_path: Path) -> None:
    ck = {"checkpoint_dir": str(tmp_path / "ck")}
    with pytest.raises(mp.ProcessRaisedException, match="Interrupted"):  # mid ADMM epoch 1 (round 3)
        mp.spawn(_worker, args=(2, free_port(), str(tmp_path), {**ck, "interrupt_after": 3}), nprocs=2)
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path), {**ck, "resume": True}), nprocs=2)
    train_once(tmp_path / "single.npz")
    single, r0 = np.load(tmp_path / "single.npz"), np.load(tmp_path / "rank0.npz")
    np.testing.assert_array_equal(r0["mask"], single["mask"])
    for name in ("w1", "b1", "w2"):
        np.testing.assert_allclose(r0[name], single[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_a_broken_torchrun_environment_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "5")
    with pytest.raises(SpecError, match="invalid torchrun environment: RANK=5, WORLD_SIZE=2"):
        train_once(Path("unused.npz"))
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(SpecError, match="cannot join the process group of 2 processes"):
        train_once(Path("unused.npz"))
