"""The preprocessing spec: parsing, canonical text, checks, resolving against model dims, pixel math."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from onnxprune.data.preprocess import Preprocess, as_preprocess, parse_preprocess
from onnxprune.errors import DataError, SpecError

IMAGENET = "resize=256;crop=224;mean=0.485/0.456/0.406;std=0.229/0.224/0.225;channels=rgb;layout=nchw"


def gray(a: np.ndarray) -> Image.Image:
    return Image.fromarray(np.asarray(a, dtype=np.uint8), mode="L")


# --- parsing and text form ---------------------------------------------------------------------------


def test_parse_examples() -> None:
    p = parse_preprocess("resize=32,crop=28,mean=0.5,std=0.5,channels=gray")
    assert p == Preprocess(resize=32, crop=(28, 28), mean=(0.5,), std=(0.5,), channels="gray")
    q = parse_preprocess(IMAGENET)
    assert q.resize == 256 and q.crop == (224, 224) and q.layout == "nchw" and q.channels == "rgb"
    assert q.mean == (0.485, 0.456, 0.406) and q.std == (0.229, 0.224, 0.225)
    assert parse_preprocess(" Resize = 28x32 ; CROP=24x20; layout=NHWC ;") == Preprocess(
        resize=(28, 32), crop=(24, 20), layout="nhwc"
    )
    assert parse_preprocess("") == Preprocess() == as_preprocess(None)


def test_from_dict_takes_yaml_values() -> None:
    from_yaml = Preprocess.from_dict(
        {"resize": 256, "crop": [224, 224], "mean": [0.485, 0.456, 0.406], "std": "0.229/0.224/0.225",
         "channels": "RGB", "layout": "nchw"}
    )  # fmt: skip
    assert from_yaml == parse_preprocess(IMAGENET)
    assert Preprocess.from_dict({"resize": "28x32", "scale": 1, "mean": 0}) == Preprocess(
        resize=(28, 32), scale=1.0, mean=(0.0,)
    )
    assert as_preprocess({"crop": 8}) == Preprocess(crop=(8, 8))


def test_canonical_text() -> None:
    assert str(parse_preprocess(IMAGENET)) == (
        "resize=256,crop=224x224,mean=0.485/0.456/0.406,std=0.229/0.224/0.225,channels=rgb,layout=nchw"
    )
    assert str(Preprocess()) == "layout=nchw"
    assert str(Preprocess(resize=(28, 28), scale=1.0)) == "resize=28x28,layout=nchw,scale=1"


sizes = st.integers(1, 4096)
floats = st.floats(-1e3, 1e3, allow_nan=False).filter(lambda v: v != 0)
specs = st.builds(
    Preprocess,
    resize=st.none() | sizes | st.tuples(sizes, sizes),
    crop=st.none() | st.tuples(sizes, sizes),
    mean=st.none() | st.tuples(floats),
    std=st.none() | st.tuples(st.floats(1e-6, 1e3)),
    channels=st.none() | st.sampled_from(["gray", "rgb", "bgr"]),
    layout=st.sampled_from(["nchw", "nhwc"]),
    scale=st.floats(1e-3, 1e6),
)


@given(specs)
def test_text_round_trip(p: Preprocess) -> None:
    assert parse_preprocess(str(p)) == p
    assert parse_preprocess(str(p).replace(",", ";")) == p


@given(st.lists(st.floats(0.01, 10), min_size=3, max_size=3).map(tuple))
def test_per_channel_round_trip(values: tuple[float, ...]) -> None:
    p = Preprocess(mean=values, std=values, channels="bgr")
    assert parse_preprocess(str(p)) == p


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("size=28", r"unknown key 'size' \(known keys: resize, crop, mean, std, channels, layout, scale\)"),
        ("resize=-3", r"resize=-3: expected a size"),
        ("crop=0", r"crop=0: sizes are positive"),
        ("crop=28x0", r"crop=28x0: sizes are positive"),
        ("resize=2.5", r"resize=2.5"),
        ("std=0", r"std=0: std values must be > 0"),
        ("std=0.5/0/0.5", r"std=0.5/0/0.5: std values must be > 0"),
        ("mean=a", r"mean=a: expected numbers"),
        ("mean=0.1/0.2", r"mean=0.1/0.2: 2 values; give one, or one per channel"),
        ("mean=0.1/0.2/0.3,channels=gray", r"mean=0.1/0.2/0.3: 3 values.*channels=gray has 1 channel"),
        ("std=inf", r"std=inf: values must be finite"),
        ("channels=yuv", r"channels=yuv: expected one of gray, rgb, bgr"),
        ("layout=chw", r"layout=chw: expected one of nchw, nhwc"),
        ("scale=0", r"scale=0.*positive number"),
        ("scale=x", r"scale=x: expected a number"),
        ("mean=0.5,0.5,0.5", r"'0.5' is not key=value .*'/'"),
        ("resize=1,resize=2", r"resize is given twice"),
    ],
)
def test_spec_errors(text: str, needle: str) -> None:
    with pytest.raises(SpecError, match=needle):
        parse_preprocess(text)


def test_spec_errors_from_dict_and_constructor() -> None:
    with pytest.raises(SpecError, match="unknown key 'Size'"):
        Preprocess.from_dict({"Size": 3})
    with pytest.raises(SpecError, match="expected a mapping"):
        Preprocess.from_dict([("resize", 3)])  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="crop=-1"):
        Preprocess(crop=(-1, 3))
    with pytest.raises(SpecError, match="resize=True"):
        Preprocess(resize=True)
    with pytest.raises(SpecError, match="expected text, a mapping or a Preprocess"):
        as_preprocess(3)  # type: ignore[arg-type]


# --- resolving against the model input -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("dims", "channels", "resize"),
    [
        (["batch", 1, 28, 28], "gray", (28, 28)),
        ([None, 3, 224, 224], "rgb", (224, 224)),
        (["N", "C", "H", "W"], "rgb", None),
        (["N", 1, "H", 28], "gray", None),
        ([None, 3, 0, 0], "rgb", None),
    ],
)
def test_resolve_defaults(dims: list, channels: str, resize: tuple[int, int] | None) -> None:
    p = Preprocess().resolve(dims)
    assert (p.channels, p.resize, p.crop) == (channels, resize, None)


def test_resolve_keeps_the_spec() -> None:
    p = parse_preprocess("resize=32,channels=bgr").resolve([None, 3, 28, 28])
    assert (p.resize, p.crop, p.channels) == (32, None, "bgr")
    assert parse_preprocess("crop=20").resolve([None, 1, 28, 28]).resize is None
    nhwc = parse_preprocess("layout=nhwc").resolve([None, 24, 32, 1])
    assert (nhwc.channels, nhwc.resize) == ("gray", (24, 32))


def test_resolve_errors() -> None:
    with pytest.raises(
        SpecError, match=r"channels=gray gives 1 channel\(s\) but the model input \(\?, 3, 8, 8\)"
    ):
        parse_preprocess("channels=gray").resolve([None, 3, 8, 8])
    with pytest.raises(
        DataError, match=r"has 28 channels .*is its layout nhwc\? \(--preprocess layout=nhwc\)"
    ):
        Preprocess().resolve([None, 28, 28, 1])
    with pytest.raises(DataError, match=r"4-d image input \(NCHW\); the model input is \(\?, 784\)"):
        Preprocess().resolve([None, 784])
    with pytest.raises(SpecError, match=r"mean=0\.1/0\.2/0\.3: 3 values"):
        parse_preprocess("mean=0.1/0.2/0.3").resolve([None, 1, 8, 8])


# --- applying it to images ------------------------------------------------------------------------------


def test_default_is_uint8_over_255() -> None:
    a = np.random.default_rng(0).integers(0, 256, (5, 7), dtype=np.uint8)
    out = Preprocess().apply(gray(a))
    assert out.dtype == np.float32 and out.shape == (1, 5, 7)
    np.testing.assert_array_equal(out[0], a.astype(np.float32) / np.float32(255.0))


def test_resize_shorter_side_keeps_aspect_and_constants() -> None:
    img = gray(np.full((20, 40), 77))  # h=20, w=40
    out = Preprocess(resize=10).apply(img)
    assert out.shape == (1, 10, 20)
    np.testing.assert_array_equal(out, np.float32(77) / np.float32(255))
    assert Preprocess(resize=10).apply(gray(np.zeros((45, 30)))).shape == (1, 15, 10)  # int(10 * 45 / 30)
    assert Preprocess(resize=(6, 9)).apply(img).shape == (1, 6, 9)


def test_resize_is_pil_bilinear() -> None:
    a = np.random.default_rng(1).integers(0, 256, (16, 12), dtype=np.uint8)
    want = np.asarray(gray(a).resize((5, 7), Image.Resampling.BILINEAR), dtype=np.float32) / np.float32(255)
    np.testing.assert_array_equal(Preprocess(resize=(7, 5)).apply(gray(a))[0], want)


def test_center_crop_of_a_gradient() -> None:
    a = np.tile(np.arange(10, dtype=np.uint8), (6, 1)) * 10 + np.arange(6, dtype=np.uint8)[:, None]
    out = Preprocess(crop=(2, 4), scale=1.0).apply(gray(a))[0]
    # rows from round((6 - 2) / 2) = 2, columns from round((10 - 4) / 2) = 3, as torchvision's CenterCrop
    np.testing.assert_array_equal(out, a[2:4, 3:7].astype(np.float32))
    with pytest.raises(DataError, match=r"crop 8x4 is larger than the image \(6x10\): resize first"):
        Preprocess(crop=(8, 4)).apply(gray(a))


def test_resize_then_crop_order() -> None:
    out = Preprocess(resize=32, crop=(28, 28)).apply(gray(np.full((64, 48), 9)))
    assert out.shape == (1, 28, 28)
    with pytest.raises(DataError, match=r"crop 40x40 is larger than the image \(42x32 after resize\)"):
        Preprocess(resize=32, crop=(40, 40)).apply(gray(np.full((64, 48), 9)))


def test_mean_std_math() -> None:
    rgb = np.random.default_rng(2).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    out = Preprocess(mean=mean, std=std, channels="rgb").apply(Image.fromarray(rgb))
    x = rgb.astype(np.float32) / np.float32(255)
    want = ((x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)).transpose(2, 0, 1)
    np.testing.assert_allclose(out, want, rtol=1e-6)
    one = Preprocess(mean=(0.5,), std=(0.5,)).apply(gray(np.array([[0, 255]])))
    np.testing.assert_array_equal(one, [[[-1.0, 1.0]]])


def test_rgb_bgr_gray_and_nhwc() -> None:
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 20, 30
    img = Image.fromarray(rgb)
    as_rgb = Preprocess(channels="rgb", scale=1.0).apply(img)
    as_bgr = Preprocess(channels="bgr", scale=1.0).apply(img)
    assert as_rgb.shape == (3, 2, 3) and list(as_rgb[:, 0, 0]) == [10, 20, 30]
    np.testing.assert_array_equal(as_bgr, as_rgb[::-1])
    nhwc = Preprocess(channels="bgr", layout="nhwc", scale=1.0).apply(img)
    np.testing.assert_array_equal(nhwc, as_bgr.transpose(1, 2, 0))
    as_gray = Preprocess(channels="gray", scale=1.0).apply(img)
    assert as_gray.shape == (1, 2, 3)
    np.testing.assert_array_equal(as_gray, np.asarray(img.convert("L"), dtype=np.float32)[None])
    # channels left open: single-band images stay gray, others are rgb
    assert Preprocess().apply(img).shape == (3, 2, 3) and Preprocess().apply(gray(rgb[..., 0])).shape == (
        1,
        2,
        3,
    )
    gray_as_rgb = Preprocess(channels="rgb").apply(gray(rgb[..., 0]))
    np.testing.assert_array_equal(gray_as_rgb[0], gray_as_rgb[2])
