"""IDX and .npz files given by path, in-memory Python sources, DataSplits helpers and multi-input checks."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from onnxprune.data import ArrayData, DataSplits, Dims, check_fits, load_data
from onnxprune.errors import DataError
from tests.data.helpers import xd, xs, ys

IMAGE: Dims = ["N", 1, 4, 4]
TWO: dict[str, Dims] = {"a": [None, 3], "b": [None, 2]}


def write_idx(path: Path, array: np.ndarray) -> Path:
    """uint8 IDX file, gzipped when the name ends in .gz."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}i", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def images(n: int) -> np.ndarray:
    """(n, 4, 4) uint8 images; image i has pixel (0, 0) = i and 200 elsewhere."""
    a = np.full((n, 4, 4), 200, dtype=np.uint8)
    a[:, 0, 0] = np.arange(n)
    return a


def image_ids(data: ArrayData) -> list[int]:
    return [int(v) for v in np.round(xs(data)[:, 0, 0, 0] * 255)]


# --- IDX files --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["-ubyte.gz", "-ubyte"])
def test_idx_file_with_labels_beside_it(tmp_path: Path, suffix: str) -> None:
    path = write_idx(tmp_path / f"my-images-idx3{suffix}", images(10))
    write_idx(tmp_path / f"my-labels-idx1{suffix}", np.arange(10) % 3)
    splits = load_data(str(path), IMAGE, val_fraction=0.3, seed=2)
    assert splits.name == path.name and splits.labeled
    assert len(splits.train) == 7 and len(splits.val) == 3 and splits.test is splits.val
    assert sorted(image_ids(splits.train) + image_ids(splits.val)) == list(range(10))
    for part in (splits.train, splits.val):
        x = xs(part)
        assert x.shape[1:] == (1, 4, 4) and x.dtype == np.float32
        np.testing.assert_allclose(x[:, 0, 1:, :], 200 / 255, rtol=1e-6)  # scaled to [0, 1]
        assert ys(part).dtype == np.int64
        np.testing.assert_array_equal(ys(part), np.array(image_ids(part)) % 3)  # labels follow samples


def test_idx_file_without_labels(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "my-images-idx3-ubyte.gz", images(6))
    write_idx(tmp_path / "other-labels-idx1-ubyte.gz", np.zeros(6))  # not this file's labels
    splits = load_data(str(path), IMAGE, val_fraction=0.5, seed=0)
    assert not splits.labeled and splits.val.y is None and splits.test.y is None
    assert sorted(image_ids(splits.train) + image_ids(splits.val)) == list(range(6))


def test_idx_label_count_mismatch(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "my-images-idx3-ubyte.gz", images(10))
    write_idx(tmp_path / "my-labels-idx1-ubyte.gz", np.zeros(9))
    with pytest.raises(DataError, match=r"has 10 images but my-labels-idx1-ubyte.gz has 9 labels"):
        load_data(str(path), IMAGE)


def test_idx_file_must_fit_the_model(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "my-images-idx3-ubyte.gz", images(4))
    with pytest.raises(DataError, match=r"axis 2: 4 != 28"):
        load_data(str(path), ["N", 1, 28, 28])
    labels = write_idx(tmp_path / "my-labels-idx1-ubyte.gz", np.zeros(4))
    with pytest.raises(DataError, match=r"holds 1-d data, not images"):
        load_data(str(labels), IMAGE)


def test_idx_max_samples(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "my-images-idx3-ubyte.gz", images(20))
    write_idx(tmp_path / "my-labels-idx1-ubyte.gz", np.arange(20) % 7)
    splits = load_data(str(path), IMAGE, max_samples=5, val_fraction=0.2, seed=0)
    assert len(splits.train) == 4 and len(splits.val) == 1
    ids = image_ids(splits.train) + image_ids(splits.val)
    assert sorted(ids) == [0, 1, 2, 3, 4]  # the first samples
    np.testing.assert_array_equal(np.concatenate([ys(splits.train), ys(splits.val)]), np.array(ids) % 7)


# --- .npz files -------------------------------------------------------------------------------------------


def two_inputs(n: int, start: int = 0) -> dict[str, np.ndarray]:
    """Sample i: a = (i, i, i), b = (-i, -i), float64; y = i % 4."""
    i = np.arange(start, start + n, dtype=np.float64)[:, None]
    return {"a": np.repeat(i, 3, axis=1), "b": -np.repeat(i, 2, axis=1), "y": np.arange(start, start + n) % 4}


def save_npz(path: Path, *parts: dict[str, Any]) -> None:
    np.savez(path, **{k: v for part in parts for k, v in part.items()})


def check_two(data: ArrayData, labeled: bool = True) -> list[int]:
    """The sample ids of a two-input split, after checking that inputs and labels belong together."""
    x = xd(data)
    assert sorted(x) == ["a", "b"] and x["a"].dtype == np.float32 and x["b"].dtype == np.float32
    np.testing.assert_array_equal(x["b"], -x["a"][:, :2])
    ids = x["a"][:, 0].astype(np.int64)
    if labeled:
        np.testing.assert_array_equal(ys(data), ids % 4)
    return [int(i) for i in ids]


def test_npz_two_inputs_with_test_split(tmp_path: Path) -> None:
    train, test = two_inputs(10), two_inputs(4, 100)
    save_npz(tmp_path / "d.npz", train, {f"{k}_test": v for k, v in test.items()})
    splits = load_data(str(tmp_path / "d.npz"), TWO, val_fraction=0.2, seed=0)
    assert splits.name == "d.npz" and len(splits.train) == 8 and len(splits.val) == 2
    assert sorted(check_two(splits.train) + check_two(splits.val)) == list(range(10))
    assert check_two(splits.test) == [100, 101, 102, 103]


def test_npz_two_inputs_without_labels(tmp_path: Path) -> None:
    arrays = two_inputs(6)
    np.savez(tmp_path / "d.npz", a=arrays["a"], b=arrays["b"])
    splits = load_data(str(tmp_path / "d.npz"), TWO, val_fraction=0.5, seed=0)
    assert not splits.labeled
    assert sorted(check_two(splits.train, False) + check_two(splits.val, False)) == list(range(6))


@pytest.mark.parametrize(
    ("drop", "needle"),
    [
        (
            "b",
            r"has no array for model input 'b': a model with inputs \['a', 'b'\] needs one array per input",
        ),
        ("b_test", r"has no array 'b_test'"),
    ],
)
def test_npz_missing_input(tmp_path: Path, drop: str, needle: str) -> None:
    arrays = two_inputs(6)
    arrays |= {f"{k}_test": v for k, v in two_inputs(2).items()}
    del arrays[drop]
    save_npz(tmp_path / "d.npz", arrays)
    with pytest.raises(DataError, match=needle):
        load_data(str(tmp_path / "d.npz"), TWO)


def test_npz_single_input_named_after_the_input(tmp_path: Path) -> None:
    x = np.arange(12, dtype=np.float64).reshape(6, 2)
    np.savez(tmp_path / "d.npz", pixels=x, y=np.arange(6), pixels_test=x[:2] + 100, y_test=[7, 8])
    splits = load_data(str(tmp_path / "d.npz"), {"pixels": [None, 2]}, val_fraction=0.5, seed=0)
    assert xs(splits.train).dtype == np.float32
    np.testing.assert_array_equal(xs(splits.test), [[100, 101], [102, 103]])
    np.testing.assert_array_equal(ys(splits.test), [7, 8])
    for part in (splits.train, splits.val):
        np.testing.assert_array_equal(ys(part), xs(part)[:, 0] // 2)


def test_npz_max_samples_caps_train_and_test(tmp_path: Path) -> None:
    train, test = two_inputs(30), two_inputs(10, 100)
    save_npz(tmp_path / "d.npz", train, {f"{k}_test": v for k, v in test.items()})
    splits = load_data(str(tmp_path / "d.npz"), TWO, max_samples=6, val_fraction=0.5, seed=0)
    assert sorted(check_two(splits.train) + check_two(splits.val)) == list(range(6))
    assert check_two(splits.test) == list(range(100, 106))


def test_npz_labels(tmp_path: Path) -> None:
    x = np.zeros((4, 2), np.float32)
    np.savez(tmp_path / "ok.npz", x=x, y=np.array([[0.0], [3.0], [1.0], [3.0]]))
    splits = load_data(str(tmp_path / "ok.npz"), [None, 2], val_fraction=0.25, seed=0)
    assert sorted(np.concatenate([ys(splits.train), ys(splits.val)]).tolist()) == [0, 1, 3, 3]
    np.savez(tmp_path / "bad.npz", x=x, y=np.array([0.0, 0.5, 1.0, 2.0]))
    with pytest.raises(DataError, match=r"'y' holds non-integral values: labels must be class indices"):
        load_data(str(tmp_path / "bad.npz"), [None, 2])


# --- in-memory sources ------------------------------------------------------------------------------------


def test_bare_array() -> None:
    x = np.arange(10, dtype=np.float64)[:, None] * np.ones((1, 3))
    splits = load_data(x, [None, 3], val_fraction=0.2, seed=0)
    assert splits.name == "arrays" and not splits.labeled
    assert xs(splits.train).dtype == np.float32 and len(splits.train) == 8 and len(splits.val) == 2
    merged = np.concatenate([xs(splits.train), xs(splits.val)])
    np.testing.assert_array_equal(np.sort(merged[:, 0]), np.arange(10))


def test_array_and_labels() -> None:
    x = np.arange(12, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    splits = load_data((x, np.arange(12) % 5), [None, 3], val_fraction=0.25, seed=4)
    assert len(splits.train) == 9 and len(splits.val) == 3 and splits.test is splits.val
    for part in (splits.train, splits.val):
        assert ys(part).dtype == np.int64
        np.testing.assert_array_equal(ys(part), xs(part)[:, 0].astype(np.int64) % 5)


def test_dict_of_arrays_for_two_inputs() -> None:
    arrays = {k: v.astype(np.float32) for k, v in two_inputs(8).items()}
    y = arrays.pop("y").astype(np.int64)
    unlabeled = load_data(arrays, TWO, val_fraction=0.25, seed=0)
    assert not unlabeled.labeled
    assert sorted(check_two(unlabeled.train, False) + check_two(unlabeled.val, False)) == list(range(8))
    labeled = load_data((arrays, y), TWO, val_fraction=0.25, seed=0)
    assert sorted(check_two(labeled.train) + check_two(labeled.val)) == list(range(8))
    with pytest.raises(DataError, match=r"has arrays \['a'\] but the model inputs are \['a', 'b'\]"):
        load_data({"a": arrays["a"]}, TWO)


def test_array_data() -> None:
    data = ArrayData(np.arange(20, dtype=np.float32).reshape(10, 2), np.arange(10))
    splits = load_data(data, [None, 2], val_fraction=0.3, seed=0)
    assert len(splits.train) == 7 and len(splits.val) == 3
    for part in (splits.train, splits.val):
        np.testing.assert_array_equal(ys(part), xs(part)[:, 0] // 2)
    with pytest.raises(DataError, match=r"data 'arrays' has samples of shape \(2,\)"):
        load_data(data, [None, 3])


def test_data_splits_are_returned_as_they_are() -> None:
    def part(n: int) -> ArrayData:
        return ArrayData(np.zeros((n, 2), np.float32), np.zeros(n, np.int64))

    given = DataSplits("mine", part(5), part(2), part(3))
    assert load_data(given, [None, 2], val_fraction=0.9) is given  # not split again
    bad = DataSplits("mine", part(5), part(2), ArrayData(np.zeros((3, 4), np.float32)))
    with pytest.raises(DataError, match=r"data 'mine' has samples of shape \(4,\)"):
        load_data(bad, [None, 2])


def test_iterable_of_batches() -> None:
    batches = ((np.full((3, 2), i, np.float64), np.full(3, i)) for i in range(4))
    splits = load_data(batches, [None, 2], val_fraction=0.25, seed=0)
    assert splits.name == "loader" and len(splits.train) == 9 and len(splits.val) == 3
    for part in (splits.train, splits.val):
        assert xs(part).dtype == np.float32
        np.testing.assert_array_equal(ys(part), xs(part)[:, 0])


@pytest.mark.parametrize(("source", "kind"), [(42, "int"), (object(), "object"), (3.5, "float")])
def test_non_iterable_source(source: object, kind: str) -> None:
    with pytest.raises(DataError, match=rf"cannot use a {kind} as data \(use 'fashion-mnist'"):
        load_data(source, [None, 2])


def test_too_few_samples() -> None:
    with pytest.raises(DataError, match=r"data 'arrays' has 1 samples; need at least 2"):
        load_data(np.zeros((1, 2), np.float32), [None, 2])


# --- DataSplits and check_fits ----------------------------------------------------------------------------


def test_for_training_without_labels() -> None:
    def part(n: int) -> ArrayData:
        return ArrayData(np.arange(n, dtype=np.float32)[:, None], np.arange(n))

    splits = DataSplits("d", part(5), part(2), part(3))
    hidden = splits.for_training_without_labels()
    assert hidden.train.y is None and hidden.val.y is None and not hidden.labeled
    assert hidden.test is splits.test and ys(hidden.test).tolist() == [0, 1, 2]
    np.testing.assert_array_equal(xs(hidden.train), xs(splits.train))
    assert splits.labeled and splits.train.y is not None  # the original is unchanged


@pytest.mark.parametrize(
    ("x", "needle"),
    [
        (
            np.zeros((2, 3)),
            r"data 'd' has one array but the model has 2 inputs \(a, b\): give arrays keyed by input name",
        ),
        (
            {"a": np.zeros((2, 3)), "b": np.zeros((2, 2)), "c": np.zeros((2, 1))},
            r"has arrays \['a', 'b', 'c'\] but the model inputs are \['a', 'b'\] \(unknown 'c'\)",
        ),
        (
            {"a": np.zeros((2, 3))},
            r"has arrays \['a'\] but the model inputs are \['a', 'b'\] \(missing 'b'\)",
        ),
        (
            {"a": np.zeros((2, 3)), "b": np.zeros((2, 5))},
            r"data 'd' input 'b' has samples of shape \(5,\) but the model input is \(\?, 2\) "
            r"\(axis 1: 5 != 2\)",
        ),
        (
            {"a": np.zeros((2, 3, 1)), "b": np.zeros((2, 2))},
            r"input 'a' has samples of shape \(3, 1\).* rank 2",
        ),
    ],
)
def test_check_fits_multi_input(x: np.ndarray | dict[str, np.ndarray], needle: str) -> None:
    with pytest.raises(DataError, match=needle):
        check_fits(x, TWO, "d")


def test_check_fits_accepts_matching_and_dynamic_dims() -> None:
    check_fits({"b": np.zeros((2, 2)), "a": np.zeros((2, 3))}, TWO, "d")
    check_fits({"a": np.zeros((2, 7, 3))}, {"a": ["n", "seq", 3]}, "d")
    check_fits(np.zeros((2, 3)), {"only": [None, 3]}, "d")
