from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from onnxprune.data import check_fits, load_data, load_fashion_mnist, read_idx, resolve_input_shape, split
from onnxprune.errors import DataError


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}i", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fake_fmnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 50), ("t10k", 20)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    monkeypatch.setenv("ONNXPRUNE_FASHION_MNIST", str(tmp_path))
    return tmp_path


def test_idx_round_trip(tmp_path: Path) -> None:
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", a)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), a)


def test_idx_truncated_and_bad_magic(tmp_path: Path) -> None:
    write_idx(tmp_path / "a.gz", np.zeros((4, 5), np.uint8))
    raw = gzip.decompress((tmp_path / "a.gz").read_bytes())
    (tmp_path / "t.idx").write_bytes(raw[:-3])
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "t.idx")
    (tmp_path / "m.idx").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DataError, match="bad magic"):
        read_idx(tmp_path / "m.idx")


def test_fashion_mnist_layout(fake_fmnist: Path) -> None:
    train, test = load_fashion_mnist()
    assert train.x.shape == (50, 1, 28, 28) and train.x.dtype == np.float32
    assert train.x.min() >= 0.0 and train.x.max() <= 1.0
    assert test.y is not None and test.y.dtype == np.int64 and len(test.y) == 20


def test_load_data_fashion_mnist_split(fake_fmnist: Path) -> None:
    splits = load_data("fashion-mnist", ["batch", 1, 28, 28], val_fraction=0.2, seed=1)
    assert len(splits.train) == 40 and len(splits.val) == 10 and len(splits.test) == 20
    assert splits.labeled


def test_npz_with_and_without_labels(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((30, 3, 4, 4)).astype(np.float32)
    np.savez(tmp_path / "l.npz", x=x, y=np.arange(30) % 3)
    np.savez(tmp_path / "u.npz", x=x)
    labeled = load_data(str(tmp_path / "l.npz"), [None, 3, 4, 4])
    unlabeled = load_data(str(tmp_path / "u.npz"), [None, 3, 4, 4])
    assert labeled.labeled and not unlabeled.labeled
    assert len(labeled.train) + len(labeled.val) == 30


@pytest.mark.parametrize(
    ("arrays", "needle"),
    [
        ({"z": np.zeros(3)}, "no array 'x'"),
        ({"x": np.zeros((4, 3, 4, 4)), "y": np.zeros(3)}, "has 4 samples"),
    ],
)
def test_npz_errors(tmp_path: Path, arrays: dict[str, np.ndarray], needle: str) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=needle):
        load_data(str(tmp_path / "bad.npz"), [None, 3, 4, 4])


def test_unknown_source_and_format(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_data(str(tmp_path / "none.npz"), [None, 1, 2, 2])
    (tmp_path / "d.csv").write_text("1,2")
    with pytest.raises(DataError, match="unsupported format"):
        load_data(str(tmp_path / "d.csv"), [None, 1, 2, 2])


def test_shape_checks() -> None:
    check_fits(np.zeros((2, 3, 8, 8)), ["n", 3, None, None], "d")
    with pytest.raises(DataError, match=r"axis 1: 1 != 3"):
        check_fits(np.zeros((2, 1, 8, 8)), ["n", 3, 8, 8], "d")
    with pytest.raises(DataError, match="rank"):
        check_fits(np.zeros((2, 8, 8)), ["n", 3, 8, 8], "d")


def test_resolve_input_shape() -> None:
    assert resolve_input_shape(["n", 3, 8, 8], None) == (1, 3, 8, 8)
    assert resolve_input_shape(["n", 3, "h", "w"], (2, 3, 5, 5)) == (2, 3, 5, 5)
    with pytest.raises(DataError, match="--input-shape"):
        resolve_input_shape(["n", 3, "h", "w"], None)
    with pytest.raises(DataError, match="does not fit"):
        resolve_input_shape(["n", 3, 8, 8], (1, 4, 8, 8))


def test_random_data_and_split_are_seeded() -> None:
    a = load_data("random", ["n", 2, 4, 4], seed=3)
    b = load_data("random", ["n", 2, 4, 4], seed=3)
    np.testing.assert_array_equal(a.train.x, b.train.x)
    assert not a.labeled
    from onnxprune.data import ArrayData

    data = ArrayData(np.arange(10, dtype=np.float32)[:, None], np.arange(10))
    tr, va = split(data, 0.3, seed=0)
    assert sorted(np.concatenate([tr.y, va.y]).tolist()) == list(range(10)) and len(va) == 3


def test_random_data_honours_max_samples() -> None:
    capped = load_data("random", ["n", 2, 4, 4], max_samples=16)
    assert len(capped.train) == 16 and len(capped.val) == 8  # validation: a quarter, at least 8
    assert len(load_data("random", ["n", 2, 4, 4]).train) == 256  # the default without a cap
