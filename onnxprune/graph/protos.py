"""Protobuf helpers for large models: never a second full copy of the weights.

Python protobuf (upb) keeps a message's bytes in an arena that is freed only with the whole message, and
every read of ``raw_data`` returns a new ``bytes``. So, for models of gigabytes:

* :func:`tensor_array` reads an initializer as a read-only numpy view of that one ``bytes`` (no second
  copy as ``numpy_helper.to_array(t).copy()`` makes), or as a read-only memory map of its external file;
* :func:`shell` copies a model without its initializers (the structure only), :func:`weightless` without
  the data of its large initializers (for shape inference), so nothing copies the weights as a whole;
* :func:`write_external` streams a model to a file with its weights in a data file beside it, one tensor
  at a time, optionally changing values on the way (the masked model is written this way, never held);
* :func:`load_external` fills external initializers in, one tensor at a time;
* :func:`model_file` hands ONNX Runtime or the checker a file: the serialized bytes of a small model, a
  temporary file with external data for a large one (protobuf cannot serialize a model over 2 GB).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

DATA_ALIGN = 4096  # tensors in a data file start at page boundaries (ONNX Runtime can map them)
INLINE_BYTES = 1024  # initializers up to this size stay in the .onnx file (as onnx's size_threshold)
LARGE_MODEL_BYTES = 256 * 2**20  # above: sessions and checks go through a temporary file, not bytes
TWO_GB = 2**31 - 1  # protobuf's limit for one message

Transform = Callable[[str, np.ndarray], np.ndarray | None]

# dtypes whose raw_data is the plain little-endian numpy layout (others go through numpy_helper)
_PLAIN: dict[int, type] = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.DOUBLE: np.float64,
    onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.INT8: np.int8,
    onnx.TensorProto.INT16: np.int16,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.UINT8: np.uint8,
    onnx.TensorProto.UINT16: np.uint16,
    onnx.TensorProto.UINT32: np.uint32,
    onnx.TensorProto.UINT64: np.uint64,
    onnx.TensorProto.BOOL: np.bool_,
}
_LITTLE = np.little_endian


def is_external(t: onnx.TensorProto) -> bool:
    return t.data_location == onnx.TensorProto.EXTERNAL


def external_info(t: onnx.TensorProto) -> tuple[str, int, int | None]:
    """(location, offset, length or None) of an external tensor."""
    info = {e.key: e.value for e in t.external_data}
    length = info.get("length")
    return info["location"], int(info.get("offset", 0) or 0), int(length) if length else None


def tensor_nbytes(t: onnx.TensorProto) -> int:
    """Bytes of a tensor's values, from dims and dtype (or the stored length of external data).

    Never ``ByteSize()``: protobuf serializes the message to measure it."""
    if is_external(t):
        length = external_info(t)[2]
        if length is not None:
            return length
    size = int(np.prod(t.dims, dtype=np.int64)) if len(t.dims) else 1
    try:
        itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
    except Exception:  # undefined or string dtype: a guess is enough for size decisions
        itemsize = 4
    return size * itemsize


def tensor_array(t: onnx.TensorProto, base_dir: str | Path | None = None) -> np.ndarray:
    """The values of ``t`` as a READ-ONLY array without a second copy.

    In-memory raw data: a view of the one ``bytes`` protobuf returns (``arr.base`` is that object);
    external data (``base_dir`` = the model's folder): a read-only memory map of the data file, so only
    the pages read become resident. Other storages (typed fields, big-endian hosts, bfloat16, float8,
    4-bit, strings) fall back to ``numpy_helper.to_array``."""
    dims = tuple(int(d) for d in t.dims)
    dtype = _PLAIN.get(t.data_type)
    if is_external(t):
        if base_dir is None:
            raise ValueError(f"initializer {t.name!r} has external data: its folder is needed")
        if dtype is None or not _LITTLE:
            return numpy_helper.to_array(t, str(base_dir))
        location, offset, _ = external_info(t)
        count = int(np.prod(dims, dtype=np.int64)) if dims else 1
        if count == 0:
            return np.zeros(dims, dtype=dtype)
        mm = np.memmap(Path(base_dir) / location, dtype=dtype, mode="r", offset=offset, shape=(count,))
        return mm.reshape(dims)
    if dtype is not None and _LITTLE and t.HasField("raw_data"):
        return np.frombuffer(t.raw_data, dtype=dtype).reshape(dims)
    arr: np.ndarray = numpy_helper.to_array(t)
    arr.flags.writeable = False
    return arr


def set_tensor(t: onnx.TensorProto, values: np.ndarray) -> None:
    """Replace the values (and dims) of ``t`` in place, in its own dtype; name and other fields stay."""
    dtype = _PLAIN.get(t.data_type)
    if dtype is None or not _LITTLE:
        name, doc = t.name, t.doc_string
        np_dtype = onnx.helper.tensor_dtype_to_np_dtype(t.data_type)
        t.CopyFrom(numpy_helper.from_array(np.asarray(values, dtype=np_dtype), name))
        t.doc_string = doc
        return
    # np.asarray with order="C", not np.ascontiguousarray: the latter returns at least 1-d, and a scalar
    # written back as shape (1,) breaks every rank-sensitive reader (Unsqueeze -> Concat of a pad spec)
    arr: np.ndarray = np.asarray(values, dtype=dtype, order="C")
    for f in ("float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data"):
        t.ClearField(f)
    t.ClearField("external_data")
    t.ClearField("data_location")
    del t.dims[:]
    t.dims.extend(arr.shape)
    t.raw_data = arr.tobytes()


def new_tensor(name: str, values: np.ndarray, like: onnx.TensorProto | None = None) -> onnx.TensorProto:
    """A tensor named ``name`` holding ``values`` (in ``like``'s dtype and with its doc_string)."""
    t = onnx.TensorProto()
    t.name = name
    if like is not None:
        t.data_type = like.data_type
        t.doc_string = like.doc_string
    else:
        t.data_type = onnx.helper.np_dtype_to_tensor_dtype(np.asarray(values).dtype)
    set_tensor(t, values)
    return t


Proto = onnx.GraphProto | onnx.ModelProto


def _copy_fields(src: Proto, dst: Proto, skip: str) -> None:
    for fd, value in src.ListFields():
        if fd.name == skip:
            continue
        target = getattr(dst, fd.name)
        if fd.is_repeated:
            target.extend(value)
        elif fd.type == fd.TYPE_MESSAGE:
            target.CopyFrom(value)
        else:
            setattr(dst, fd.name, value)


def shell(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` without any initializer (every other field of the model and graph copied)."""
    out = onnx.ModelProto()
    _copy_fields(model, out, "graph")
    if model.HasField("graph"):
        out.graph.SetInParent()
        _copy_fields(model.graph, out.graph, "initializer")
    return out


def copy_model(model: onnx.ModelProto, skip: frozenset[str] | set[str] = frozenset()) -> onnx.ModelProto:
    """A copy of ``model`` without the initializers named in ``skip`` (one tensor copied at a time)."""
    out = shell(model)
    for t in model.graph.initializer:
        if t.name not in skip:
            out.graph.initializer.add().CopyFrom(t)
    return out


def weightless(model: onnx.ModelProto, max_bytes: int = 64 * 1024) -> onnx.ModelProto:
    """A copy for shape inference: initializers over ``max_bytes`` become graph inputs of their dtype and
    shape (their values are never needed for shapes), the small ones (shape constants) are copied."""
    out = shell(model)
    inputs = {vi.name for vi in out.graph.input}
    for t in model.graph.initializer:
        if tensor_nbytes(t) <= max_bytes and not is_external(t):
            out.graph.initializer.add().CopyFrom(t)
        elif t.name not in inputs:
            out.graph.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    out.ir_version = max(out.ir_version, 4)
    return out


def map_initializers(model: onnx.ModelProto, new_values: Transform) -> onnx.ModelProto:
    """A new model whose initializers are ``new_values(name, view)`` where that is not None (same name
    and dtype, any shape), copies of ``model``'s elsewhere; one tensor in flight at a time."""
    out = shell(model)
    for t in model.graph.initializer:
        values = new_values(t.name, tensor_array(t))
        target = out.graph.initializer.add()
        if values is None:
            target.CopyFrom(t)
            continue
        target.name, target.data_type, target.doc_string = t.name, t.data_type, t.doc_string
        set_tensor(target, values)
    return out


def model_nbytes(model: onnx.ModelProto) -> int:
    """Serialized size, external data counted: exact (``ByteSize``) up to 256 MiB of weights, else
    the structure's size plus every initializer's values (``ByteSize`` serializes the whole model)."""
    weights = sum(tensor_nbytes(t) for t in model.graph.initializer)
    if weights <= 256 * 2**20 and not any(is_external(t) for t in model.graph.initializer):
        return model.ByteSize()
    return shell(model).ByteSize() + weights + 16 * len(model.graph.initializer)


def write_external(
    model: onnx.ModelProto,
    path: str | Path,
    location: str | None = None,
    transform: Transform | None = None,
    base_dir: str | Path | None = None,
    inline_bytes: int = INLINE_BYTES,
) -> None:
    """Write ``model`` to ``path`` with every initializer over ``inline_bytes`` in the data file
    ``location`` (default ``<file name>.data``) beside it, at :data:`DATA_ALIGN`-aligned offsets.

    One tensor is in flight at a time; ``model`` is not modified. ``transform(name, values)`` may return
    new values for an initializer (same dtype; e.g. masked), or None to keep them. ``base_dir``: where
    ``model``'s own external data lives, if it has any."""
    path = Path(path)
    location = location or path.name + ".data"
    out = shell(model)
    with open(path.parent / location, "wb") as data:
        for t in model.graph.initializer:
            values = None
            if transform is not None:
                values = transform(t.name, tensor_array(t, base_dir))
            size = values.nbytes if values is not None else tensor_nbytes(t)
            if size <= inline_bytes:
                if values is not None:
                    out.graph.initializer.append(new_tensor(t.name, values, like=t))
                elif is_external(t):
                    small = np.array(tensor_array(t, base_dir))
                    out.graph.initializer.append(new_tensor(t.name, small, like=t))
                else:
                    out.graph.initializer.add().CopyFrom(t)
                continue
            offset = data.tell()
            pad = -offset % DATA_ALIGN
            if pad:
                data.write(b"\0" * pad)
                offset += pad
            if values is not None:
                data.write(np.ascontiguousarray(values, dtype=_np_dtype(t)).data)
            elif is_external(t) or not t.HasField("raw_data") or _PLAIN.get(t.data_type) is None:
                data.write(np.ascontiguousarray(tensor_array(t, base_dir)).data)
            else:
                data.write(t.raw_data)
            length = data.tell() - offset
            ref = out.graph.initializer.add()
            ref.name, ref.data_type, ref.doc_string = t.name, t.data_type, t.doc_string
            ref.dims.extend(values.shape if values is not None else t.dims)
            ref.data_location = onnx.TensorProto.EXTERNAL
            for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
                entry = ref.external_data.add()
                entry.key, entry.value = key, value
            del values
    with open(path, "wb") as f:
        f.write(out.SerializeToString())


def _np_dtype(t: onnx.TensorProto) -> np.dtype:
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type))


def load_external(model: onnx.ModelProto, base_dir: str | Path) -> None:
    """Read every external initializer into ``raw_data``, one at a time, in place."""
    for t in model.graph.initializer:
        if not is_external(t):
            continue
        location, offset, length = external_info(t)
        with open(Path(base_dir) / location, "rb") as f:
            f.seek(offset)
            blob = f.read() if length is None else f.read(length)
        t.ClearField("external_data")
        t.ClearField("data_location")
        t.raw_data = blob
        del blob


@contextlib.contextmanager
def model_file(model: onnx.ModelProto | str | Path, threshold: int | None = None) -> Iterator[str | bytes]:
    """What ONNX Runtime or the checker takes for ``model``: a path stays a path; a ModelProto up to
    ``threshold`` bytes (default :data:`LARGE_MODEL_BYTES`) is serialized, a larger one is written to a
    temporary folder with external data (removed after the block; on Linux a session that mapped the
    file keeps it)."""
    if not isinstance(model, onnx.ModelProto):
        yield str(model)
        return
    if threshold is None:
        threshold = LARGE_MODEL_BYTES
    if model_nbytes(model) <= threshold and not any(is_external(t) for t in model.graph.initializer):
        yield model.SerializeToString()
        return
    tmp = Path(tempfile.mkdtemp(prefix="onnxprune-"))
    try:
        write_external(model, tmp / "model.onnx")
        yield str(tmp / "model.onnx")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_model(model: onnx.ModelProto | str | Path, full_check: bool = False) -> None:
    """``onnx.checker.check_model`` that works for models of any size (large ones through a file)."""
    with model_file(model) as source:
        if isinstance(source, bytes):
            onnx.checker.check_model(source, full_check=full_check)
        else:
            onnx.checker.check_model(source, full_check=full_check)


def file_has_external_data(path: str | Path) -> bool:
    """Whether the ONNX file at ``path`` keeps initializers in external files (reads the graph only)."""
    model = onnx.load(str(path), load_external_data=False)
    return any(is_external(t) for t in model.graph.initializer)


def remove_model_files(path: str | Path) -> None:
    """Remove ``path`` and its data file (as :func:`write_external` names it), if present."""
    p = Path(path)
    for f in (p, p.with_name(p.name + ".data")):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f)
