"""Stages 2 and 3 of ``compress``: the model, loaded and normalized; the data, read, split and matched to
the model's inputs. ONNX side: no torch."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import onnx

from ..config.settings import DataSettings
from ..data import DataSplits, load_data
from ..data.arrays import ArrayData, Inputs
from ..data.preprocess import Preprocess
from ..graph.draws import input_draws
from ..graph.inputs import Batch, ModelInputs
from ..graph.load import NormalizedModel, load_model, normalize
from ..graph.verify import verification_inputs
from ..runtime.sessions import available_providers, user_session
from ..runtime.timing import PhaseClock
from .resolve import Config

log = logging.getLogger("onnxprune")


@dataclass(frozen=True)
class Loaded:
    """The normalized model (the source of truth every later stage edits copies of) and its inputs."""

    normalized: NormalizedModel
    inputs: ModelInputs

    @property
    def base(self) -> onnx.ModelProto:
        return self.normalized.model


def load(config: Config, clock: PhaseClock) -> Loaded:
    """Load, check and normalize ``config.model`` (see :mod:`onnxprune.graph.load`)."""
    return load_source(config.model, clock)


def load_source(model: str | Path | onnx.ModelProto, clock: PhaseClock) -> Loaded:
    """Load, check and normalize ``model`` (see :mod:`onnxprune.graph.load`); ONNX Runtime must load it
    (onnx's checker passes models ORT refuses, e.g. mixed element types: a one-line
    :class:`~onnxprune.errors.RuntimeRefusedError` here, not a misattributed failure of the pruned model)."""
    with clock.phase("load"):
        original, _ = load_model(model)
        normalized = normalize(original, inplace=True)  # load_model's copy is private: no second one
        user_session(normalized.model)  # created and dropped: the check is that it loads
        return Loaded(normalized, ModelInputs.of(normalized.model))


@dataclass(frozen=True)
class Samples:
    """The data splits and the model's inputs resolved to their shapes (at batch 1)."""

    splits: DataSplits
    inputs: ModelInputs

    def verification_inputs(self, seed: int, real: Inputs) -> list[Batch]:
        """Seeded check batches at the inputs' shapes and dtypes, plus the first samples of ``real``
        (:func:`onnxprune.graph.verify.verification_inputs`)."""
        return list(verification_inputs(self.inputs.shape, seed, real, dtypes=self.inputs.dtypes()))

    def runnable_batches(self, batches: Sequence[int]) -> tuple[int, ...]:
        """The batch sizes of ``batches`` the model can run: all of them, or its fixed batch alone."""
        fixed = self.inputs.fixed_batch
        if fixed is None or not batches or set(batches) == {fixed}:
            return tuple(batches)
        return (fixed,)

    def in_whole_batches(self, size: int) -> Samples:
        """These samples with train and validation cut to whole multiples of ``size`` (at least one): a
        torch import that runs only a model's fixed batch trains on them."""

        def cut(part: ArrayData) -> ArrayData:
            return part.head(max(size, len(part) // size * size)) if len(part) % size else part

        splits = replace(self.splits, train=cut(self.splits.train), val=cut(self.splits.val))
        return replace(self, splits=splits)

    @property
    def test_split(self) -> str:
        """What the report calls the split accuracy is measured on."""
        return "test" if self.splits.test is not self.splits.val else "validation"


def read_data(config: Config, loaded: Loaded, clock: PhaseClock) -> Samples:
    """The data of ``config.data``, split and fitted to the model's inputs; labels withheld from training
    with ``labels=False``. The gates are checked against it (a gate on accuracy needs labels)."""
    samples = load_samples(config.data, config.preprocess, config.run.seed, loaded, clock)
    config.gates.validate(samples.splits.test.labeled, available_providers())
    return samples


def load_samples(
    data: DataSettings, preprocess: Preprocess | None, seed: int, loaded: Loaded, clock: PhaseClock
) -> Samples:
    """The data of ``data``, split (seeded) and fitted to the model's inputs; labels withheld from training
    with ``data.labels`` False."""
    draws = input_draws(loaded.base)
    with clock.phase("data"):
        splits = load_data(
            data.source,
            loaded.inputs.dims(),
            data.input_shape,
            val_fraction=data.val_fraction,
            seed=seed,
            preprocess=preprocess,
            max_samples=data.max_samples,
            draws=draws,
        )
        if splits.name == "random":
            for name, draw in draws.items():
                log.info("random data: input %r: %s", name, draw.describe())
        if not data.labels:
            splits = splits.for_training_without_labels()
    inputs = loaded.inputs.resolved(loaded.base, data.input_shape, splits.train.x)
    return Samples(splits, inputs)


__all__ = ["Loaded", "Samples", "load", "load_samples", "load_source", "read_data"]
