"""Every setting is defined once (onnxprune.config.settings): its CLI option, recipe key, keyword follow."""

from __future__ import annotations

import dataclasses

import pytest
from click.testing import CliRunner

from onnxprune.cli import main
from onnxprune.config.recipe import parse_recipe
from onnxprune.config.settings import (
    SECTIONS,
    DistillSettings,
    Options,
    TrainOptions,
    TrainSettings,
    entries,
    parse_section,
)
from onnxprune.errors import SpecError


def _sample(kind: object) -> object:
    return {int: 3, float: 0.5, bool: True, str: "x"}.get(kind, "x")  # type: ignore[call-overload]


def test_every_setting_is_a_compress_option() -> None:
    text = CliRunner().invoke(main, ["compress", "--help"], terminal_width=200).output
    for cls in SECTIONS:
        for e in entries(cls):
            assert (e.flag in text) == e.meta.cli, (cls.__name__, e.name)


def test_every_recipe_setting_parses_and_lands_under_its_keyword() -> None:
    for cls in SECTIONS:
        for e in (e for e in entries(cls) if e.meta.recipe):
            value = e.meta.choices[0] if e.meta.choices else _sample(e.kind)
            assert parse_section(cls, {e.name: value}, "r") == {e.option: value}


def test_recipe_sections_reject_what_they_do_not_define() -> None:
    with pytest.raises(SpecError, match="train: unknown key 'checkpoint_dir'"):
        parse_recipe({"train": {"checkpoint_dir": "ckpt"}}, "r")  # a command-line setting only
    with pytest.raises(SpecError, match=r"train\.lr must be float"):
        parse_recipe({"train": {"lr": "fast"}}, "r")


def test_train_options_take_every_training_setting_and_build_the_config() -> None:
    given = {e.option: e.meta.choices[0] if e.meta.choices else e.default for e in entries(TrainSettings)}
    options = TrainOptions(**given, distill_loss="kl")
    settings = options.build(TrainSettings)
    assert dataclasses.asdict(settings) == {e.name: given[e.option] for e in entries(TrainSettings)}
    assert options.build(DistillSettings).loss == "kl"
    with pytest.raises(TypeError, match="admm_epoch"):
        TrainOptions(admm_epoch=1)


def test_layers_merge_the_later_over_the_earlier() -> None:
    recipe, command_line = TrainOptions(lr=0.01, batch_size=64), TrainOptions(lr=0.02, threads=None)
    merged = recipe.merged(command_line)
    assert merged.given() == {"lr": 0.02, "batch_size": 64} and merged.threads is None
    assert isinstance(merged, Options) and merged == TrainOptions(batch_size=64, lr=0.02)
