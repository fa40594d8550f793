"""The torch-free stage (pipeline.prune): plan -> magnitude masks -> surgery -> verify, without training."""

from __future__ import annotations

import numpy as np
import pytest

from onnxprune.config.settings import DataOptions
from onnxprune.errors import SpecError
from onnxprune.graph.probe import channel_norms
from onnxprune.pipeline.loading import load, read_data
from onnxprune.pipeline.planning import analyze_model
from onnxprune.pipeline.prune import prune_stage
from onnxprune.pipeline.resolve import Given, Outputs, resolve
from onnxprune.runtime.timing import PhaseClock
from tests.builders import vgg_like


def _stage(sparsity: str) -> tuple[object, object]:
    given = Given(sparsity=sparsity, data=DataOptions(data="random"))
    config = resolve(vgg_like(), None, given, Outputs())
    clock = PhaseClock()
    loaded = load(config, clock)
    samples = read_data(config, loaded, clock)
    planned, exported = prune_stage(config, loaded, samples, analyze_model(loaded, samples, clock), clock)
    return (loaded, planned, exported), clock


def test_magnitude_masks_keep_the_strongest_channels_and_the_pruned_model_verifies() -> None:
    (loaded, planned, exported), clock = _stage("filter:0.5")
    assert exported.verification.passed and {"analyze", "export", "verify"} <= set(clock.phases)
    assert planned.keep and exported.masked is not None
    for name, k in planned.keep.items():
        keep = exported.masks[name]
        norms = channel_norms(loaded.base, planned.plan.group(name))
        assert keep.sum() == k and norms[keep].min() >= norms[~keep].max()
    assert len(exported.pruned.graph.initializer) == len(loaded.base.graph.initializer)
    assert sum(int(np.prod(t.dims)) for t in exported.pruned.graph.initializer) < sum(
        int(np.prod(t.dims)) for t in loaded.base.graph.initializer
    )


def test_element_sparsity_needs_training() -> None:
    with pytest.raises(SpecError, match="needs training"):
        _stage("irregular:0.5")
