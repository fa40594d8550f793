"""Data sources as numpy arrays: Fashion-MNIST (IDX files of Debian's package), ``.npz`` files, random.

numpy only: the ONNX side evaluates with these arrays in ONNX Runtime, the torch side wraps them in a
DataLoader. Images are float32 NCHW scaled to [0, 1]; any normalization belongs inside the model graph.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's package; ONNXPRUNE_FASHION_MNIST overrides
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"

# dims of the model input: an int for a fixed dim, None (or a name) for a dynamic one
Dims = Sequence[int | str | None]


@dataclass(frozen=True)
class ArrayData:
    x: np.ndarray
    y: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.x)

    @property
    def labeled(self) -> bool:
        return self.y is not None


@dataclass(frozen=True)
class DataSplits:
    """train / validation / test arrays; ``test`` is the split accuracy is reported on."""

    name: str
    train: ArrayData
    val: ArrayData
    test: ArrayData

    @property
    def labeled(self) -> bool:
        return self.train.labeled


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): magic 0x0000TTNN, then NN big-endian int32 dims, then data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read IDX file {path}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an IDX file (bad magic)")
    dtypes: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if raw[2] not in dtypes:
        raise DataError(f"{path}: unknown IDX element type 0x{raw[2]:02x}")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">i4", count=ndim, offset=4).astype(np.int64)
    dtype = np.dtype(dtypes[raw[2]])
    count = int(np.prod(dims))
    offset = 4 + 4 * ndim
    if len(raw) - offset < count * dtype.itemsize:
        raise DataError(f"{path} is truncated: expected {count} elements of shape {tuple(dims)}")
    return np.frombuffer(raw, dtype=dtype, count=count, offset=offset).reshape(tuple(dims))


def load_fashion_mnist(root: Path | None = None) -> tuple[ArrayData, ArrayData]:
    """(train, test) as float32 (N, 1, 28, 28) in [0, 1] and int64 labels."""
    root = root or Path(os.environ.get("ONNXPRUNE_FASHION_MNIST", FASHION_MNIST_DIR))
    files = {
        "train_x": "train-images-idx3-ubyte.gz",
        "train_y": "train-labels-idx1-ubyte.gz",
        "test_x": "t10k-images-idx3-ubyte.gz",
        "test_y": "t10k-labels-idx1-ubyte.gz",
    }
    missing = [name for name in files.values() if not (root / name).exists()]
    if missing:
        raise DataError(
            f"Fashion-MNIST not found in {root} (missing {missing[0]}): "
            f"install it with 'apt-get install -y {FASHION_MNIST_PACKAGE}'"
        )
    arrays = {key: read_idx(root / name) for key, name in files.items()}

    def images(a: np.ndarray) -> np.ndarray:
        return (a.astype(np.float32) / 255.0)[:, None, :, :]

    train = ArrayData(images(arrays["train_x"]), arrays["train_y"].astype(np.int64))
    test = ArrayData(images(arrays["test_x"]), arrays["test_y"].astype(np.int64))
    return train, test


def load_npz(path: Path) -> tuple[ArrayData, ArrayData | None]:
    """``x`` (and optional ``y``); ``x_test``/``y_test`` when the file has a test split."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"cannot read {path} as .npz: {e}") from None
    if "x" not in arrays:
        raise DataError(f"{path} has no array 'x' (found: {sorted(arrays) or 'nothing'})")

    def pair(xk: str, yk: str) -> ArrayData:
        x = np.asarray(arrays[xk], dtype=np.float32)
        y = arrays.get(yk)
        if y is not None:
            y = np.asarray(y).astype(np.int64).reshape(-1)
            if len(y) != len(x):
                raise DataError(f"{path}: '{xk}' has {len(x)} samples but '{yk}' has {len(y)}")
        return ArrayData(x, y)

    train = pair("x", "y")
    test = pair("x_test", "y_test") if "x_test" in arrays else None
    return train, test


def random_data(shape: Sequence[int], n_train: int, n_val: int, seed: int) -> DataSplits:
    """Gaussian inputs without labels: structure-only runs (previews, tests)."""
    rng = np.random.default_rng(seed)
    sample = tuple(int(d) for d in shape[1:])

    def draw(n: int) -> ArrayData:
        return ArrayData(rng.standard_normal((n, *sample)).astype(np.float32))

    return DataSplits("random", draw(n_train), draw(n_val), draw(n_val))


def split(data: ArrayData, val_fraction: float, seed: int) -> tuple[ArrayData, ArrayData]:
    """Seeded random train/validation split."""
    n = len(data)
    n_val = max(1, round(n * val_fraction)) if n > 1 else 0
    order = np.random.default_rng(seed).permutation(n)
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])

    def take(idx: np.ndarray) -> ArrayData:
        return ArrayData(data.x[idx], None if data.y is None else data.y[idx])

    return take(train_idx), take(val_idx)


def check_fits(x: np.ndarray, dims: Dims, source: str) -> None:
    """Error unless the sample shape of ``x`` matches the model input's fixed dims."""
    if x.ndim != len(dims):
        raise DataError(
            f"data '{source}' has samples of shape {tuple(x.shape[1:])} but the model input has rank "
            f"{len(dims)} ({_fmt_dims(dims)})"
        )
    for axis, (want, got) in enumerate(zip(dims[1:], x.shape[1:], strict=True), start=1):
        if isinstance(want, int) and want > 0 and want != got:
            raise DataError(
                f"data '{source}' has samples of shape {tuple(x.shape[1:])} but the model input is "
                f"{_fmt_dims(dims)} (axis {axis}: {got} != {want})"
            )


def _fmt_dims(dims: Dims) -> str:
    return "(" + ", ".join(str(d) if isinstance(d, int) and d > 0 else "?" for d in dims) + ")"


def resolve_input_shape(dims: Dims, given: Sequence[int] | None) -> tuple[int, ...]:
    """A concrete input shape: ``given`` checked against the fixed dims, or the model's own if all fixed."""
    if given is not None:
        if len(given) != len(dims):
            raise DataError(f"--input-shape has rank {len(given)} but the model input is {_fmt_dims(dims)}")
        for axis, (want, got) in enumerate(zip(dims, given, strict=True)):
            if isinstance(want, int) and want > 0 and want != got and axis > 0:
                raise DataError(
                    f"--input-shape {tuple(given)} does not fit the model input {_fmt_dims(dims)}"
                )
        return tuple(int(g) for g in given)
    if any(not (isinstance(d, int) and d > 0) for d in dims[1:]):
        raise DataError(f"the model input {_fmt_dims(dims)} has dynamic dims: give --input-shape N,C,H,W")
    return (1, *(int(d) for d in dims[1:]))  # type: ignore[arg-type]


def load_data(
    source: str,
    dims: Dims,
    input_shape: Sequence[int] | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    n_random: int = 256,
) -> DataSplits:
    """Resolve ``--data``: 'fashion-mnist', 'random' or a path to an ``.npz`` file."""
    if source == "random":
        shape = resolve_input_shape(dims, input_shape)
        return random_data(shape, n_random, max(8, n_random // 4), seed)
    test: ArrayData | None
    if source == "fashion-mnist":
        full, test = load_fashion_mnist()
        name = "fashion-mnist"
    else:
        path = Path(source)
        if not path.exists():
            raise DataError(f"data '{source}' not found (use 'fashion-mnist', 'random' or an .npz file)")
        if path.suffix != ".npz":
            raise DataError(
                f"data '{source}': unsupported format (use 'fashion-mnist', 'random' or an .npz file)"
            )
        full, test = load_npz(path)
        name = path.name
    if len(full) < 2:
        raise DataError(f"data '{source}' has {len(full)} samples; need at least 2")
    check_fits(full.x, dims, source)
    train, val = split(full, val_fraction, seed)
    if test is None:
        test = val
    else:
        check_fits(test.x, dims, source)
    return DataSplits(name, train, val, test)
