"""IDX files (the MNIST format): Fashion-MNIST from Debian's package, or any images-idx3 file a user has."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from ..errors import DataError
from .arrays import ArrayData

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's package; ONNXPRUNE_FASHION_MNIST overrides
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
IDX_SUFFIXES = ("-ubyte", "-ubyte.gz", ".idx", ".idx.gz")


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


def is_idx(path: Path) -> bool:
    return path.name.endswith(IDX_SUFFIXES)


def idx_images(a: np.ndarray, path: Path) -> np.ndarray:
    """(N, H, W) -> float32 (N, 1, H, W); 8-bit pixels scaled to [0, 1], other types kept as they are."""
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim < 2:
        raise DataError(f"{path} holds {a.ndim}-d data, not images (expected (N, H, W) or (N, C, H, W))")
    scale = 255.0 if a.dtype == np.uint8 else 1.0
    return (a.astype(np.float32) / np.float32(scale)).astype(np.float32)


def labels_beside(images: Path) -> Path | None:
    """``x-images-idx3-ubyte.gz`` -> ``x-labels-idx1-ubyte.gz`` when that file exists."""
    if "images-idx3" not in images.name:
        return None
    candidate = images.with_name(images.name.replace("images-idx3", "labels-idx1"))
    return candidate if candidate.exists() else None


def load_idx(path: Path) -> ArrayData:
    """Images of an IDX file, with the labels of the ``labels-idx1`` file beside it if there is one."""
    x = idx_images(read_idx(path), path)
    label_path = labels_beside(path)
    if label_path is None:
        return ArrayData(x)
    y = read_idx(label_path).astype(np.int64).reshape(-1)
    if len(y) != len(x):
        raise DataError(f"{path} has {len(x)} images but {label_path.name} has {len(y)} labels")
    return ArrayData(x, y)


def load_fashion_mnist(root: Path | None = None) -> tuple[ArrayData, ArrayData]:
    """(train, test) as float32 (N, 1, 28, 28) in [0, 1] and int64 labels."""
    root = root or Path(os.environ.get("ONNXPRUNE_FASHION_MNIST", FASHION_MNIST_DIR))
    names = ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz")
    files = [root / n for n in (*names, *(n.replace("images-idx3", "labels-idx1") for n in names))]
    missing = [f.name for f in files if not f.exists()]
    if missing:
        raise DataError(
            f"Fashion-MNIST not found in {root} (missing {missing[0]}): "
            f"install it with 'apt-get install -y {FASHION_MNIST_PACKAGE}'"
        )
    return load_idx(root / names[0]), load_idx(root / names[1])
