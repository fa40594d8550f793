"""The settings of benchmarks/run_peers.py shared by its Torch-Pruning and onnxprune sides (torch-free, so
the driver parses options and renders results without torch_pruning installed)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finetune:
    """The training recipe shared by every method (onnxprune gets the same values as options)."""

    lr: float = 0.01
    weight_decay: float = 5e-4
    batch_size: int = 128
    augment: str = "crop,flip"
    warmup: float = 0.1  # fraction of each phase's steps warming up the lr (onnxprune's --warmup)


@dataclass(frozen=True)
class TpSettings:
    """Torch-Pruning's own knobs: iterative steps, GSL's regularization and its share of the steps."""

    iterative_steps: int = 5
    gsl_reg: float = 5e-4
    gsl_fraction: float = 0.5
    align: int = 1  # round_to (1: exact ratios, like onnxprune --align 1)
