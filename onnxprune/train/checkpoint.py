"""Training checkpoints: everything a resumed run needs to continue exactly where the last one stopped.

One file, ``DIR/checkpoint.pt``, replaced atomically (temporary file + ``os.replace``) after every ADMM
round, after the hard prune and after every retraining epoch. It holds the weights, Z and U (keyed by ONNX
initializer name, torch layout), ρ, the Adam state (re-keyed by initializer name), the learning-rate
schedule, the phase/epoch/step counters, the kept channels, the history and the RNG states (torch, numpy,
python). The data order needs no state: it is a pure function of (seed, phase, epoch)
(:mod:`.distributed`). A checkpoint records a fingerprint of its run (model and data hashes, keep counts,
hyperparameters); resuming a different run is an error naming what differs.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import ArrayData
from ..errors import OutputError, SpecError
from ..io import atomic_path

__all__ = ["Checkpointer", "data_hash", "load_optimizer", "optimizer_state", "rng_state", "set_rng_state"]

log = logging.getLogger("onnxprune.checkpoint")

FILE = "checkpoint.pt"
VERSION = 1


class Checkpointer:
    """Saves to / loads from ``directory``; ``writer`` False (ranks but 0) makes :meth:`save` a no-op."""

    def __init__(self, directory: str | Path, fingerprint: Mapping[str, Any], writer: bool = True) -> None:
        self.dir = Path(directory)
        self.path = self.dir / FILE
        self.fingerprint = dict(fingerprint)
        self.writer = writer
        if writer:
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise OutputError(
                    f"cannot create checkpoint directory {self.dir}: {e.strerror or e}"
                ) from None

    def save(self, state: Mapping[str, Any]) -> None:
        """Write ``state`` (with the fingerprint and the RNG states) atomically."""
        if not self.writer:
            return
        payload = {"version": VERSION, "fingerprint": self.fingerprint, "rng": rng_state(), **state}
        try:
            with atomic_path(self.path) as tmp:
                torch.save(payload, tmp)
        except OSError as e:
            raise OutputError(f"cannot write checkpoint {self.path}: {e.strerror or e}") from None

    def load(self) -> dict[str, Any] | None:
        """The latest checkpoint, None when there is none; an error if it belongs to another run."""
        if not self.path.exists():
            if self.writer:  # one warning per job, not per process
                log.warning("no checkpoint in %s: starting from the beginning", self.dir)
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as e:  # any unpickling failure: a truncated or foreign file
            raise SpecError(f"cannot read checkpoint {self.path}: {str(e).splitlines()[0]}") from None
        if not isinstance(state, dict) or state.get("version") != VERSION:
            raise SpecError(f"{self.path} is not an onnxprune checkpoint (version {VERSION})")
        diff = _differences(state.get("fingerprint", {}), self.fingerprint)
        if diff:
            raise SpecError(f"checkpoint {self.path} is from a different run: {'; '.join(diff)}")
        if self.writer:
            log.info("resuming from %s (%s)", self.path, _where(state))
        return state


def _differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    keys = sorted(set(saved) | set(current))
    return [
        f"{k} {saved.get(k, '<unset>')} in the checkpoint, {current.get(k, '<unset>')} now"
        for k in keys
        if saved.get(k) != current.get(k)
    ]


def _where(state: Mapping[str, Any]) -> str:
    if state["phase"] == "admm":
        return f"admm epoch {state['epoch']}, step {state['done']} of the epoch"
    return f"retraining, {state['epoch']} epochs done"


# -- fingerprint helpers -----------------------------------------------------------------------------
def arrays_hash(arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 of named arrays (names, dtypes, shapes, bytes), 16 hex digits."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())  # a copy, but hashing is once per run
    return h.hexdigest()[:16]


def data_hash(data: ArrayData) -> str:
    x = data.x if isinstance(data.x, Mapping) else {"x": data.x}
    arrays = {**{f"x.{k}": np.asarray(v) for k, v in x.items()}}
    if data.y is not None:
        arrays["y"] = np.asarray(data.y)
    return arrays_hash(arrays)


# -- optimizer and RNG state -------------------------------------------------------------------------
def optimizer_state(opt: torch.optim.Optimizer, names: list[str]) -> dict[str, Any]:
    """``opt.state_dict()``, per-parameter state keyed by initializer name (``names``: parameter order)."""
    sd = opt.state_dict()
    return {"param_groups": sd["param_groups"], "state": {names[i]: s for i, s in sd["state"].items()}}


def load_optimizer(opt: torch.optim.Optimizer, saved: Mapping[str, Any], names: list[str]) -> None:
    index = {name: i for i, name in enumerate(names)}
    missing = set(saved["state"]) - set(index)
    if missing:
        raise SpecError(f"checkpoint optimizer state names unknown tensors: {sorted(missing)[:3]}")
    state = {index[name]: s for name, s in saved["state"].items()}
    opt.load_state_dict({"param_groups": saved["param_groups"], "state": state})


def rng_state() -> dict[str, Any]:
    np_state: Any = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the generators dropout and user code draw from (the data order needs none)."""
    torch.set_rng_state(state["torch"])
    kind, key, *rest = state["numpy"]
    np.random.set_state((kind, key.numpy().astype(np.uint32), *rest))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
