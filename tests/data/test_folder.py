"""Image folders: layouts, labels, equivalence with IDX files, preprocessing, and every error case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from onnxprune.data import ArrayData, Dims, load_data
from onnxprune.data.folder import class_names, list_image_folder, load_image_folder
from onnxprune.data.idx import idx_images
from onnxprune.data.preprocess import Preprocess
from onnxprune.errors import DataError, SpecError

MNIST: Dims = ["N", 1, 28, 28]


def save(path: Path, a: np.ndarray) -> Path:
    """Write uint8 pixels (H, W) gray or (H, W, 3) rgb as an image file (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(a, dtype=np.uint8)).save(path)
    return path


def const(value: int, h: int = 28, w: int = 28) -> np.ndarray:
    return np.full((h, w), value, dtype=np.uint8)


def load(path: Path, dims: Dims = MNIST, spec: Preprocess | str | None = None) -> ArrayData:
    return load_image_folder(path, dims, spec, ["input"])


def xs(data: ArrayData) -> np.ndarray:
    """The samples of a single-input ArrayData (narrowed for mypy)."""
    assert isinstance(data.x, np.ndarray)
    return data.x


# --- layouts ----------------------------------------------------------------------------------------------


def test_class_folders_label_in_sorted_order(tmp_path: Path) -> None:
    # pixel value = 10 * class + index, so the values give the reading order
    for cls, name in enumerate(["ant", "bee", "cat"]):
        for i in (2, 0, 1):
            save(tmp_path / name / f"img{i}.png", const(10 * cls + i))
    (tmp_path / "bee" / "README.txt").write_text("not an image")
    (tmp_path / "bee" / ".hidden.png").write_bytes(b"junk")
    save(tmp_path / "cat" / "nested" / "deep.png", const(200))  # deeper folders are not read
    save(tmp_path / ".ipynb_checkpoints" / "x.png", const(201))  # hidden folders are not classes
    data = load(tmp_path)
    assert data.y is not None and data.y.dtype == np.int64
    assert list(data.y) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    x = xs(data)
    assert x.shape == (9, 1, 28, 28) and x.dtype == np.float32
    np.testing.assert_array_equal(np.round(x[:, 0, 0, 0] * 255), [0, 1, 2, 10, 11, 12, 20, 21, 22])
    assert class_names(tmp_path) == ["ant", "bee", "cat"] == class_names(str(tmp_path))


def test_flat_folder_is_unlabeled_in_name_order(tmp_path: Path) -> None:
    for i, name in enumerate(["b.png", "a.PNG", "c.jpg", "d.bmp", "e.TIFF"]):
        save(tmp_path / name, const(50 * i))
    (tmp_path / "notes.md").write_text("ignored")
    (tmp_path / ".DS_Store").write_bytes(b"\0")
    data = load(tmp_path)
    assert data.y is None and len(data) == 5
    names = [f.name for f in list_image_folder(tmp_path).files]
    assert names == ["a.PNG", "b.png", "c.jpg", "d.bmp", "e.TIFF"]
    values = xs(data)[:, 0, 5, 5] * 255
    np.testing.assert_allclose(values, np.array([50, 0, 100, 150, 200]), atol=2)  # jpg is lossy
    assert class_names(tmp_path) == []


def test_labels_follow_code_point_order_as_torchvision(tmp_path: Path) -> None:
    for name in ["b", "B", "a", "10", "9"]:
        save(tmp_path / name / "x.png", const(1))
    assert class_names(tmp_path) == ["10", "9", "B", "a", "b"]


# --- values ------------------------------------------------------------------------------------------------


def test_png_folder_is_bit_identical_to_idx(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (24, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 3, 24)
    for i, (a, y) in enumerate(zip(pixels, labels, strict=True)):
        save(tmp_path / f"class{y}" / f"{i:05d}.png", a)
    data = load(tmp_path)
    order = np.argsort(labels, kind="stable")  # class by class, name (= index) order within a class
    want = idx_images(pixels[order], tmp_path)
    assert xs(data).dtype == want.dtype == np.float32
    assert np.array_equal(xs(data), want) and xs(data).tobytes() == want.tobytes()
    np.testing.assert_array_equal(data.y, labels[order])


def test_fixed_model_size_resizes_only_images_that_differ(tmp_path: Path) -> None:
    a = np.random.default_rng(1).integers(0, 256, (28, 28), dtype=np.uint8)
    save(tmp_path / "a.png", a)
    save(tmp_path / "b.png", const(99, 56, 40))
    data = load(tmp_path)
    x = xs(data)
    assert x.shape == (2, 1, 28, 28)
    np.testing.assert_array_equal(x[0, 0], a.astype(np.float32) / np.float32(255))  # untouched
    np.testing.assert_array_equal(x[1], np.float32(99) / np.float32(255))  # resized; a constant stays


def test_spec_text_rgb_nhwc_and_mean_std(tmp_path: Path) -> None:
    rgb = np.zeros((40, 30, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 2] = 255, 51
    save(tmp_path / "one" / "x.png", rgb)
    save(tmp_path / "two" / "y.bmp", rgb)
    nhwc = load(tmp_path, [None, 8, 8, 3], "resize=10,crop=8,mean=0.5,std=0.5,channels=bgr,layout=nhwc")
    assert xs(nhwc).shape == (2, 8, 8, 3)
    np.testing.assert_allclose(xs(nhwc)[0, 3, 3], [(0.2 - 0.5) / 0.5, -1.0, 1.0], rtol=1e-6)  # b, g, r
    nchw = load(tmp_path, ["N", 3, "H", "W"], Preprocess(channels="rgb"))
    assert xs(nchw).shape == (2, 3, 40, 30)
    np.testing.assert_allclose(xs(nchw)[0, :, 0, 0], [1.0, 0.0, 0.2], rtol=1e-6)


def test_gif_webp_and_palette_images(tmp_path: Path) -> None:
    a = const(128, 12, 12)
    save(tmp_path / "a.gif", a)
    Image.fromarray(np.stack([a] * 3, axis=-1)).quantize(4).save(tmp_path / "b.png")  # adaptive palette
    save(tmp_path / "c.webp", np.stack([a] * 3, axis=-1))
    data = load(tmp_path, [None, 3, 12, 12])
    assert xs(data).shape == (3, 3, 12, 12)
    np.testing.assert_allclose(xs(data), 128 / 255, atol=3 / 255)


# --- errors ------------------------------------------------------------------------------------------------


def test_multi_input_model(tmp_path: Path) -> None:
    save(tmp_path / "a.png", const(0))
    with pytest.raises(
        DataError, match=r"feeds a single-input model; the model has inputs \['img', 'meta'\]"
    ):
        load_image_folder(tmp_path, MNIST, None, ["img", "meta"])


def test_empty_folders(tmp_path: Path) -> None:
    (tmp_path / "README").write_text("x")
    with pytest.raises(DataError, match=r"has no images \(\.bmp .*\) and no class folders"):
        load(tmp_path)
    save(tmp_path / "cat" / "a.png", const(0))
    save(tmp_path / "dog" / "deeper" / "b.png", const(0))
    with pytest.raises(
        DataError, match=r"class folder .*dog has no images \(folders inside it are not read\)"
    ):
        load(tmp_path)


def test_mixed_layout(tmp_path: Path) -> None:
    save(tmp_path / "loose.png", const(0))
    save(tmp_path / "cat" / "a.png", const(0))
    with pytest.raises(
        DataError, match=r"mixes image files \(loose\.png, \.\.\.\) and class folders \(cat, \.\.\.\)"
    ):
        class_names(tmp_path)


@pytest.mark.parametrize(
    ("content", "needle"),
    [(b"this is not a png", "cannot identify image file"), (None, "truncated|broken|image file")],
)
def test_corrupt_image(tmp_path: Path, content: bytes | None, needle: str) -> None:
    save(tmp_path / "a.png", const(5))
    good = np.random.default_rng(2).integers(0, 256, (28, 28), dtype=np.uint8)
    raw = save(tmp_path / "b.png", good).read_bytes()
    (tmp_path / "b.png").write_bytes(content if content is not None else raw[: len(raw) // 2])
    with pytest.raises(DataError, match=rf"cannot read image .*b\.png: .*({needle})"):
        load(tmp_path)


def test_different_sizes_without_resize(tmp_path: Path) -> None:
    save(tmp_path / "a.png", const(0, 28, 28))
    save(tmp_path / "b.png", const(0, 32, 30))
    with pytest.raises(
        DataError, match=r"images differ in size: .*a\.png is 28x28, .*b\.png is 32x30 .*--preprocess resize="
    ):
        load(tmp_path, ["N", 1, "H", "W"])
    with pytest.raises(
        DataError, match=r"differ in size after preprocessing \(resize=28,.*\): .*b\.png is 29x28"
    ):
        load(tmp_path, ["N", 1, "H", "W"], "resize=28")
    assert xs(load(tmp_path, ["N", 1, "H", "W"], "resize=24x20")).shape == (2, 1, 24, 20)


def test_size_that_does_not_fit_the_model_fails_on_the_first_image(tmp_path: Path) -> None:
    save(tmp_path / "a.png", const(0, 40, 40))
    (tmp_path / "b.png").write_bytes(b"never read")
    with pytest.raises(
        DataError,
        match=r"shape \(1, 32, 32\) with --preprocess resize=32.* but the model input is \(\?, 1, 28",
    ):
        load(tmp_path, MNIST, "resize=32")


def test_crop_larger_than_image_names_the_file(tmp_path: Path) -> None:
    save(tmp_path / "small.png", const(0, 20, 20))
    with pytest.raises(DataError, match=r"image .*small\.png: crop 28x28 is larger than the image \(20x20"):
        load(tmp_path, MNIST, "crop=28")


def test_channel_mismatch(tmp_path: Path) -> None:
    save(tmp_path / "a.png", const(0))
    with pytest.raises(
        SpecError, match=r"channels=rgb gives 3 channel\(s\) but the model input \(\?, 1, 28, 28\) has 1"
    ):
        load(tmp_path, MNIST, "channels=rgb")


# --- through load_data -------------------------------------------------------------------------------------


def test_load_data_splits_a_class_folder(tmp_path: Path) -> None:
    for i in range(20):
        save(tmp_path / "imgs" / ("even" if i % 2 == 0 else "odd") / f"{i:02d}.png", const(i))
    splits = load_data(str(tmp_path / "imgs"), {"input": ["N", 1, 28, 28]}, val_fraction=0.2, seed=3)
    assert splits.name == "imgs" and splits.labeled
    assert len(splits.train) == 16 and len(splits.val) == 4 and splits.test is splits.val
    for part in (splits.train, splits.val):
        assert part.y is not None
        values = np.round(xs(part)[:, 0, 0, 0] * 255).astype(int)
        np.testing.assert_array_equal(part.y, values % 2)  # "even" sorts before "odd": label 0
    all_values = np.concatenate([xs(splits.train)[:, 0, 0, 0], xs(splits.val)[:, 0, 0, 0]])
    assert sorted(np.round(all_values * 255).astype(int)) == list(range(20))


def test_load_data_passes_the_spec_and_reports_misfits(tmp_path: Path) -> None:
    for i in range(4):
        save(tmp_path / f"{i}.png", const(i, 10, 12))
    splits = load_data(str(tmp_path), ["N", 1, 8, 8], preprocess="crop=8", val_fraction=0.5)
    assert xs(splits.train).shape == (2, 1, 8, 8) and not splits.labeled
    with pytest.raises(DataError, match=r"shape \(1, 10, 12\) with --preprocess crop=10x12.*\(\?, 1, 8, 9\)"):
        load_data(str(tmp_path), ["N", 1, 8, 9], preprocess="crop=10x12")
