"""Command-line options: the ``compress`` settings generated from :mod:`onnxprune.config.settings`, and the
options ``bench`` and ``profile`` share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..config.settings import Entry, entries

F = TypeVar("F", bound=Callable[..., Any])


def setting_options(*sections: type, skip: frozenset[str] = frozenset()) -> Callable[[F], F]:
    """One click option per command-line setting of the dataclasses ``sections``, in field order (but the
    options named in ``skip``); each passes its value under its option name, None when not given."""

    def decorate(fn: F) -> F:
        for cls in reversed(sections):
            for e in reversed(entries(cls)):
                if e.meta.cli and e.option not in skip:
                    fn = click.option(*_names(e), e.option, **_option_kwargs(e))(fn)
        return fn

    return decorate


def _names(e: Entry) -> list[str]:
    return [e.flag, *([e.meta.short] if e.meta.short else [])]


def _option_kwargs(e: Entry) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"help": e.meta.help or None}
    if e.kind is bool:  # a flag: given means True (False for --no-<name>), absent means not given
        return kwargs | {"is_flag": True, "flag_value": not e.meta.negate, "default": None}
    kwargs["type"] = _click_type(e)
    kwargs["default"] = e.default if e.meta.show_default else None
    if e.meta.multiple:  # parsed from the tuple of values; none given is ()
        return kwargs | {"type": str, "multiple": True}
    if e.meta.show_default:
        kwargs["show_default"] = True
    return kwargs


def _click_type(e: Entry) -> Any:
    m = e.meta
    if m.choices:
        return click.Choice(list(m.choices))
    if m.directory:
        return click.Path(file_okay=False)
    bounds = {"min": m.low, "max": m.high, "min_open": m.low_open, "max_open": m.high_open}
    if e.kind is int and (m.low is not None or m.high is not None):
        return click.IntRange(**bounds)  # type: ignore[arg-type]
    if e.kind is float and (m.low is not None or m.high is not None):
        return click.FloatRange(**bounds)  # type: ignore[arg-type]
    return e.kind if e.kind in (int, float) else str


def provider_options(fn: F) -> F:
    """--provider, --threads, --warmup: shared by ``bench`` and ``profile``."""
    fn = click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True)(fn)
    fn = click.option("--threads", type=click.IntRange(min=1), help="ORT intra-op threads (default: ORT's).")(
        fn
    )
    return click.option(
        "--provider",
        "providers",
        type=click.Choice(["cpu", "cuda"]),
        multiple=True,
        help="Execution providers (default: all available).",
    )(fn)


def input_and_cuda_options(fn: F) -> F:
    """--input-shape, --cuda-option: shared by ``bench`` and ``profile``."""
    fn = click.option(
        "--cuda-option",
        "cuda_options",
        multiple=True,
        metavar="KEY=VALUE",
        help="Option of ORT's CUDA provider (repeatable), e.g. prefer_nhwc=1 (NHWC convolutions) or "
        "enable_cuda_graph=1 (CUDA graphs; outputs pre-allocated; refused by profile).",
    )(fn)
    return click.option("--input-shape", help="Sample shape for dynamic non-batch dims, e.g. 1,3,224,224.")(
        fn
    )
