"""A directory of images: class sub-folders (labeled) or image files directly in it (unlabeled).

- Class layout, as torchvision's ``ImageFolder``: every immediate sub-directory is a class, labeled by its
  index in sorted folder-name order; files are read in name order within a class; deeper folders are not
  read.
- Flat layout: the image files directly in the folder, in name order, without labels.

Image files are ``.png .jpg .jpeg .bmp .gif .webp .tif .tiff`` (any case); other files (a README) and
hidden files and folders (``.DS_Store``, ``.ipynb_checkpoints``) are ignored. Images go through a
:class:`~onnxprune.data.preprocess.Preprocess` spec, resolved against the model input (see
:meth:`Preprocess.resolve`), into float32 (N, C, H, W) arrays (N, H, W, C for ``layout=nhwc``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .arrays import ArrayData
from .fit import Dims, fmt_dims
from .preprocess import Preprocess, as_preprocess

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


@dataclass(frozen=True)
class FolderListing:
    """The images of a folder in reading order; ``labels`` None for the flat layout."""

    files: list[Path]
    labels: list[int] | None
    classes: list[str]


def load_image_folder(
    path: Path,
    dims: Dims,
    preprocess: Preprocess | str | Mapping[str, Any] | None,
    input_names: Sequence[str],
) -> ArrayData:
    """The folder's images as float32 arrays for the model input ``dims``; int64 labels for class folders.

    ``preprocess`` (a spec, its text form, a mapping, or None for the default) is resolved against ``dims``:
    see :meth:`Preprocess.resolve`.
    """
    if len(input_names) > 1:
        raise DataError(
            f"an image folder feeds a single-input model; the model has inputs {list(input_names)}"
        )
    spec = as_preprocess(preprocess).resolve(dims)
    listing = list_image_folder(path)
    pixels = _read_all(listing.files, spec, path, dims)
    y = None if listing.labels is None else np.asarray(listing.labels, dtype=np.int64)
    return ArrayData(spec.normalize(pixels), y)


def class_names(path: Path | str) -> list[str]:
    """The class names of a folder in label order (label i is ``class_names(path)[i]``); [] when flat."""
    return list_image_folder(Path(path)).classes


def list_image_folder(path: Path) -> FolderListing:
    """The folder's image files in reading order, with labels for the class layout (see the module doc)."""
    folders, images = _entries(path)
    if folders and images:
        raise DataError(
            f"image folder {path} mixes image files ({images[0].name}, ...) and class folders "
            f"({folders[0].name}, ...): put every image in a class folder (labeled) or none (unlabeled)"
        )
    if images:
        return FolderListing(images, None, [])
    if not folders:
        raise DataError(
            f"image folder {path} has no images ({' '.join(sorted(IMAGE_SUFFIXES))}) and no class folders"
        )
    files: list[Path] = []
    labels: list[int] = []
    for label, folder in enumerate(folders):
        class_images = _entries(folder)[1]
        if not class_images:
            raise DataError(f"class folder {folder} has no images (folders inside it are not read)")
        files += class_images
        labels += [label] * len(class_images)
    return FolderListing(files, labels, [f.name for f in folders])


def _entries(path: Path) -> tuple[list[Path], list[Path]]:
    """(sub-folders, image files) directly in ``path``, each sorted by name; hidden ones left out."""
    folders: list[Path] = []
    images: list[Path] = []
    try:
        with os.scandir(path) as it:
            for entry in it:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    folders.append(Path(entry.path))
                elif entry.is_file() and os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES:
                    images.append(Path(entry.path))
    except OSError as e:
        raise DataError(f"cannot read image folder {path}: {e.strerror or e}") from None
    return sorted(folders, key=lambda p: p.name), sorted(images, key=lambda p: p.name)


def _read_all(files: list[Path], spec: Preprocess, path: Path, dims: Dims) -> np.ndarray:
    """uint8 (N, H, W, C) pixels of every file; all must come out the same size."""
    first = _read_one(files[0], spec)
    _check_model_size(first, spec, path, dims)
    out = np.empty((len(files), *first.shape), dtype=np.uint8)
    out[0] = first
    for i in range(1, len(files)):
        a = _read_one(files[i], spec)
        if a.shape != first.shape:
            raise _size_error(files[0], first, files[i], a, spec)
        out[i] = a
    return out


def _read_one(file: Path, spec: Preprocess) -> np.ndarray:
    """One image's uint8 (H, W, C) pixels after channels, resize and crop; errors name the file."""
    from PIL import Image

    try:
        with Image.open(file) as img:
            return spec.pixels(img)
    except DataError as e:
        raise DataError(f"image {file}: {e}") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot read image {file}: {e}") from None


def _size_error(a_file: Path, a: np.ndarray, b_file: Path, b: np.ndarray, spec: Preprocess) -> DataError:
    after = f" after preprocessing ({spec})" if spec.resize is not None or spec.crop is not None else ""
    return DataError(
        f"images differ in size{after}: {a_file} is {a.shape[0]}x{a.shape[1]}, {b_file} is "
        f"{b.shape[0]}x{b.shape[1]} (HxW): make them equal with --preprocess resize=HxW (or crop=HxW)"
    )


def _check_model_size(pixels: np.ndarray, spec: Preprocess, path: Path, dims: Dims) -> None:
    """Fail on the first image, not after reading them all, when samples will not fit the model input.

    (``check_fits`` checks the arrays again; this message says which preprocessing produced the size.)
    """
    h, w, c = pixels.shape
    shape = (c, h, w) if spec.layout == "nchw" else (h, w, c)
    for got, want in zip(shape, dims[1:], strict=True):
        if isinstance(want, int) and want > 0 and got != want:
            raise DataError(
                f"image folder {path} gives samples of shape {shape} with --preprocess {spec} but the model "
                f"input is {fmt_dims(dims)}: set --preprocess resize=HxW or crop=HxW to its size"
            )
