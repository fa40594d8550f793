"""How images become model inputs: a small, explicit preprocessing spec (resize, crop, mean/std, channels).

The text form (``--preprocess``) is ``key=value`` items separated by ``,`` or ``;``; several values of one
key are separated by ``/``; sizes are ``28`` or ``HxW`` (``28x32``)::

    resize=32,crop=28,mean=0.5,std=0.5,channels=gray
    resize=256;crop=224;mean=0.485/0.456/0.406;std=0.229/0.224/0.225;channels=rgb;layout=nchw

Steps, in this order (torchvision's ``Resize``, ``CenterCrop``, ``ToTensor``, ``Normalize`` on PIL images):

1. convert to ``channels`` (``gray``: PIL's ``L``; ``rgb``: ``RGB``, alpha dropped; ``bgr``: reversed RGB);
2. ``resize`` (bilinear): an int resizes the shorter side to it, keeping the aspect ratio; ``HxW`` is exact;
3. ``crop``: a center crop to ``HxW`` (an int crops a square);
4. float32, divided by ``scale`` (255: 8-bit pixels to [0, 1]);
5. ``(x - mean) / std`` when given: one value for all channels or one per channel;
6. ``layout``: ``nchw`` (channels first, the default) or ``nhwc``.

Without ``mean``/``std`` the values are exactly ``uint8 / 255`` in float32, as for IDX files, so a folder of
PNGs written from an IDX file reads back bit-identical. Pixels are read as 8-bit (16-bit images are not
rescaled).

:meth:`Preprocess.resolve` fills what the spec leaves open from the model input's dims: the channel order
from the channel dim (1 -> gray, 3 -> rgb; rgb when it is dynamic) and, when the model fixes H and W and the
spec has neither ``resize`` nor ``crop``, ``resize=HxW`` (an image already of that size is left untouched).

Parsing the spec needs no PIL; applying it does (imported on first use).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from numbers import Real
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DataError, SpecError
from .fit import Dims, fmt_dims

if TYPE_CHECKING:
    from PIL.Image import Image

KEYS = ("resize", "crop", "mean", "std", "channels", "layout", "scale")
CHANNELS = {"gray": 1, "rgb": 3, "bgr": 3}
LAYOUTS = ("nchw", "nhwc")
DEFAULT_SCALE = 255.0
_KNOWN = f"known keys: {', '.join(KEYS)}"
_SIZE = re.compile(r"^\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?$")

Size = tuple[int, int]


@dataclass(frozen=True)
class Preprocess:
    """A preprocessing spec; see the module docstring. Values are checked (and lists made tuples) on creation.

    ``resize``: an int (shorter side, aspect kept) or ``(h, w)``; ``crop``: ``(h, w)`` center crop;
    ``mean``/``std``: one value or one per channel, applied after dividing by ``scale``;
    ``channels``: ``gray``, ``rgb``, ``bgr`` or None (from the model, see :meth:`resolve`);
    ``layout``: ``nchw`` or ``nhwc``.
    """

    resize: Size | int | None = None
    crop: Size | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    channels: str | None = None
    layout: str = "nchw"
    scale: float = DEFAULT_SCALE

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalize in place once, at creation
        set_(self, "resize", _check_size("resize", self.resize, keep_int=True))
        set_(self, "crop", _check_size("crop", self.crop, keep_int=False))
        set_(self, "channels", _check_choice("channels", self.channels, tuple(CHANNELS), optional=True))
        set_(self, "layout", _check_choice("layout", self.layout, LAYOUTS, optional=False))
        set_(self, "scale", _check_scale(self.scale))
        set_(self, "mean", _check_values("mean", self.mean, self.channels))
        set_(self, "std", _check_values("std", self.std, self.channels))
        if self.std is not None and any(s <= 0 for s in self.std):
            raise SpecError(f"preprocess std={_nums(self.std)}: std values must be > 0")

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Preprocess:
        """A spec from a mapping (a YAML recipe): values may be ints, floats, lists or text as in the CLI."""
        if not isinstance(spec, Mapping):
            raise SpecError(f"preprocess: expected a mapping of keys to values, got {type(spec).__name__}")
        values: dict[str, Any] = {}
        for key, value in spec.items():
            name = str(key).strip().lower()
            if name not in KEYS:
                raise SpecError(f"preprocess: unknown key {str(key)!r} ({_KNOWN})")
            values[name] = _PARSERS[name](name, value)
        return cls(**values)

    @property
    def n_channels(self) -> int | None:
        """Channels of the output (None while ``channels`` is open)."""
        return None if self.channels is None else CHANNELS[self.channels]

    def resolve(self, dims: Dims) -> Preprocess:
        """This spec with the channel order and, for fixed H and W, the size filled from the model input.

        ``dims`` are the model input's dims (``['batch', 1, 28, 28]``; ints fixed, names or None dynamic),
        ordered as ``layout`` says. Without ``resize`` and ``crop``, a model that fixes H and W gets
        ``resize=HxW``: images of another size are resized to it, images of that size are left as they are.
        """
        if len(dims) != 4:
            raise DataError(
                f"an image folder feeds a 4-d image input ({self.layout.upper()}); "
                f"the model input is {fmt_dims(dims)}"
            )
        c, h, w = (dims[1], dims[2], dims[3]) if self.layout == "nchw" else (dims[3], dims[1], dims[2])
        c_fixed, h_fixed, w_fixed = _fixed(c), _fixed(h), _fixed(w)
        channels = self.channels or _default_channels(c_fixed, dims, self.layout)
        if c_fixed is not None and CHANNELS[channels] != c_fixed:
            raise SpecError(
                f"preprocess channels={channels} gives {CHANNELS[channels]} channel(s) but the model input "
                f"{fmt_dims(dims)} has {c_fixed} (layout={self.layout}){_layout_hint(dims, self.layout)}"
            )
        resize = self.resize
        if resize is None and self.crop is None and h_fixed is not None and w_fixed is not None:
            resize = (h_fixed, w_fixed)
        return replace(self, channels=channels, resize=resize)

    def pixels(self, img: Image) -> np.ndarray:
        """Steps 1-3 (channels, resize, crop): uint8 (H, W, C) pixels of one image.

        With ``channels`` open: gray for single-band images, rgb otherwise.
        """
        channels = self.channels or ("gray" if len(img.getbands()) == 1 and img.mode != "P" else "rgb")
        img = img.convert("L" if channels == "gray" else "RGB")
        img = self._resized(img)
        img = self._cropped(img)
        a = np.asarray(img, dtype=np.uint8)
        if a.ndim == 2:
            a = a[:, :, None]
        return a[:, :, ::-1] if channels == "bgr" else a

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """Steps 4-6 on a batch of uint8 (N, H, W, C) pixels: float32 (N, C, H, W), or (N, H, W, C) for nhwc.

        ``pixels.astype(float32) / float32(scale)`` as for IDX files, so the values match bit for bit.
        """
        x = pixels.astype(np.float32) / np.float32(self.scale)
        if self.mean is not None:
            x -= np.asarray(self.mean, dtype=np.float32)
        if self.std is not None:
            x /= np.asarray(self.std, dtype=np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if self.layout == "nchw" else x

    def apply(self, img: Image) -> np.ndarray:
        """One image as a float32 (C, H, W) array ((H, W, C) for nhwc)."""
        return self.normalize(self.pixels(img)[None])[0]

    def _resize_to(self, w: int, h: int) -> tuple[int, int]:
        """(width, height) after ``resize``; an int sizes the shorter side as torchvision's Resize does."""
        if self.resize is None:
            return w, h
        if isinstance(self.resize, int):
            short, long = (w, h) if w <= h else (h, w)
            new_short, new_long = self.resize, int(self.resize * long / short)
            return (new_short, new_long) if w <= h else (new_long, new_short)
        return self.resize[1], self.resize[0]

    def _resized(self, img: Image) -> Image:
        from PIL import Image as PILImage

        size = self._resize_to(*img.size)
        return img if size == img.size else img.resize(size, PILImage.Resampling.BILINEAR)

    def _cropped(self, img: Image) -> Image:
        """Center crop, offsets rounded as torchvision's CenterCrop rounds them."""
        if self.crop is None:
            return img
        ch, cw = self.crop
        w, h = img.size
        if ch > h or cw > w:
            size = f"{h}x{w} after resize" if self.resize is not None else f"{h}x{w}"
            raise DataError(f"crop {ch}x{cw} is larger than the image ({size}): resize first (resize=...)")
        top, left = round((h - ch) / 2.0), round((w - cw) / 2.0)
        return img.crop((left, top, left + cw, top + ch))

    def __str__(self) -> str:
        """The canonical text form (``parse_preprocess(str(p)) == p``): set keys in field order; ``layout``
        always, ``scale`` when not 255. ``Preprocess()`` is ``layout=nchw``."""
        parts: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or (f.name == "scale" and value == DEFAULT_SCALE):
                continue
            parts.append(f"{f.name}={_fmt(f.name, value)}")
        return ",".join(parts)


def parse_preprocess(text: str) -> Preprocess:
    """The ``--preprocess`` text form (see the module docstring); empty text is the default spec."""
    values: dict[str, str] = {}
    for item in re.split(r"[,;]", text):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep:
            raise SpecError(
                f"preprocess: {item.strip()!r} is not key=value (separate items with ',' or ';' and "
                f"several values of one key with '/'; {_KNOWN})"
            )
        if key in values:
            raise SpecError(f"preprocess: {key} is given twice")
        values[key] = value.strip()
    return Preprocess.from_dict(values)


def as_preprocess(spec: Preprocess | str | Mapping[str, Any] | None) -> Preprocess:
    """A :class:`Preprocess` from a spec, its text form, a mapping, or None (the default spec)."""
    if spec is None:
        return Preprocess()
    if isinstance(spec, Preprocess):
        return spec
    if isinstance(spec, str):
        return parse_preprocess(spec)
    if isinstance(spec, Mapping):
        return Preprocess.from_dict(spec)
    raise SpecError(f"preprocess: expected text, a mapping or a Preprocess, got {type(spec).__name__}")


# --- parsing values (text or YAML values) ------------------------------------------------------------


def _parse_size(key: str, value: Any) -> Any:
    """Text ``28`` / ``28x32`` to an int / (h, w); other values (ints, lists) are checked on creation."""
    if not isinstance(value, str):
        return value[0] if isinstance(value, list | tuple) and len(value) == 1 else value
    match = _SIZE.match(str(value))
    if not match:
        raise SpecError(f"preprocess {key}={value}: expected a size as 28 or HxW (28x32)")
    h, w = match.groups()
    return int(h) if w is None else (int(h), int(w))


def _parse_floats(key: str, value: Any) -> tuple[float, ...] | None:
    if value is None:
        return None
    items = value if isinstance(value, list | tuple) else str(value).split("/")
    try:
        return tuple(float(v) for v in items)
    except (TypeError, ValueError):
        raise SpecError(
            f"preprocess {key}={value}: expected numbers, one or one per channel separated by '/' "
            f"(0.485/0.456/0.406)"
        ) from None


def _parse_text(key: str, value: Any) -> str | None:
    return None if value is None else str(value).strip().lower()


def _parse_scale(key: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise SpecError(f"preprocess scale={value}: expected a number (255 for 8-bit pixels)") from None


_PARSERS = {
    "resize": _parse_size,
    "crop": _parse_size,
    "mean": _parse_floats,
    "std": _parse_floats,
    "channels": _parse_text,
    "layout": _parse_text,
    "scale": _parse_scale,
}


# --- checking values ---------------------------------------------------------------------------------


def _check_size(key: str, value: Any, keep_int: bool) -> Any:
    """A positive int (kept for resize, a square for crop) or a pair of positive ints (as a tuple)."""
    if value is None:
        return None
    pair = tuple(value) if isinstance(value, list | tuple) else (value, value)
    if not (len(pair) == 2 and all(_fixed(v) is not None for v in pair)):
        shown = "x".join(str(v) for v in value) if isinstance(value, list | tuple) else value
        raise SpecError(f"preprocess {key}={shown}: sizes are positive integers, as 28 or HxW (28x32)")
    if keep_int and not isinstance(value, list | tuple):
        return int(value)
    return (int(pair[0]), int(pair[1]))


def _check_choice(key: str, value: Any, choices: tuple[str, ...], optional: bool) -> str | None:
    if value is None and optional:
        return None
    text = str(value).strip().lower()
    if text not in choices:
        raise SpecError(f"preprocess {key}={value}: expected one of {', '.join(choices)}")
    return text


def _check_scale(value: Any) -> float:
    if not _is_number(value) or not (math.isfinite(value) and value > 0):
        raise SpecError(f"preprocess scale={value}: expected a positive number (255 for 8-bit pixels)")
    return float(value)


def _check_values(key: str, value: Any, channels: str | None) -> tuple[float, ...] | None:
    """One finite float or one per channel (1 for gray, 3 for rgb/bgr; 1 or 3 while channels are open)."""
    if value is None:
        return None
    items = tuple(value) if isinstance(value, list | tuple) else (value,)
    if not items or not all(_is_number(v) for v in items):
        raise SpecError(f"preprocess {key}={_fmt_any(value)}: expected numbers")
    floats = tuple(float(v) for v in items)
    if not all(math.isfinite(v) for v in floats):
        raise SpecError(f"preprocess {key}={_nums(floats)}: values must be finite")
    allowed = (1, 3) if channels is None else (1, CHANNELS[channels])
    if len(floats) not in allowed:
        per = "channels=gray has 1 channel" if channels == "gray" else "1 or 3 channels"
        raise SpecError(
            f"preprocess {key}={_nums(floats)}: {len(floats)} values; give one, or one per channel ({per})"
        )
    return floats


def _fixed(d: Any) -> int | None:
    """A fixed dim's size; None for a dynamic one (a name, None, or a non-positive placeholder)."""
    return int(d) if isinstance(d, int | np.integer) and not isinstance(d, bool) and d > 0 else None


def _is_number(v: Any) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool)


def _default_channels(c: int | None, dims: Dims, layout: str) -> str:
    """gray for a 1-channel input, rgb for 3 channels or a dynamic channel dim."""
    if c is None or c == 3:
        return "rgb"
    if c == 1:
        return "gray"
    raise DataError(
        f"the model input {fmt_dims(dims)} has {c} channels (layout={layout}); images give 1 (gray) or 3 "
        f"(rgb, bgr){_layout_hint(dims, layout)}"
    )


def _layout_hint(dims: Dims, layout: str) -> str:
    """': is its layout nhwc? ...' when the other layout would put 1 or 3 channels in the channel dim."""
    other = "nhwc" if layout == "nchw" else "nchw"
    other_c = dims[3] if other == "nhwc" else dims[1]
    return f": is its layout {other}? (--preprocess layout={other})" if _fixed(other_c) in (1, 3) else ""


# --- formatting --------------------------------------------------------------------------------------


def _num(v: float) -> str:
    return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)


def _nums(values: tuple[float, ...]) -> str:
    return "/".join(_num(v) for v in values)


def _fmt(key: str, value: Any) -> str:
    if key == "resize" and isinstance(value, int):
        return str(value)
    if key in ("resize", "crop"):
        return f"{value[0]}x{value[1]}"
    if key in ("mean", "std"):
        return _nums(value)
    if key == "scale":
        return _num(value)
    return str(value)


def _fmt_any(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "/".join(str(v) for v in value)
    return str(value)
