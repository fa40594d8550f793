"""Output safety: outputs are checked before any work, written to a temporary file and renamed.

Nothing partial is ever left behind, and the input model is never overwritten.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import onnx

from .errors import OutputError
from .graph.protos import Transform, is_external, map_initializers, model_nbytes, write_external

EXTERNAL_DATA_BYTES = 2**31 - 2**24  # 2 GB less headroom: larger models are saved with a weights data file


def check_outputs(
    inputs: Sequence[str | Path | None], outputs: Sequence[str | Path | None], overwrite: bool = True
) -> None:
    """Fail early when an output would overwrite an input or another output, or cannot be written;
    ``overwrite=False``: also when it exists (the command line without ``--force``). The input is never
    overwritten, whatever ``overwrite`` says."""
    ins = {Path(p).resolve() for p in inputs if p is not None}
    seen: set[Path] = set()
    for raw in outputs:
        if raw is None:
            continue
        path = Path(raw).resolve()
        if path in ins:
            raise OutputError(f"output {raw} is the input model: refusing to overwrite it")
        if path in seen:
            raise OutputError(f"output {raw} is given twice")
        seen.add(path)
        if path.is_dir():
            raise OutputError(f"output {raw} is a directory")
        if not overwrite and path.exists():
            raise OutputError(f"output {raw} exists: pass --force to overwrite it")
        parent = path.parent
        if not parent.is_dir():
            raise OutputError(f"output directory {parent} does not exist")
        if not _can_create_in(parent):
            raise OutputError(f"output directory {parent} is not writable")


def derived_path(model: str | Path, *tags: str) -> Path:
    """The default output beside ``model``: ``models/x.onnx`` + ('pruned', 'int8') ->
    ``models/x.pruned.int8.onnx``."""
    path = Path(model)
    stem = path.name[: -len(".onnx")] if path.name.endswith(".onnx") else path.name
    return path.with_name(".".join([stem, *tags, "onnx"]))


def _can_create_in(directory: Path) -> bool:
    """Try it: permission bits say nothing for root or on a read-only mount."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".onnxprune-probe-", dir=directory)
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, _default_mode())  # mkstemp makes 0600 files; outputs get the usual mode
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def save_model(
    model: onnx.ModelProto,
    path: str | Path,
    transform: Transform | None = None,
    base_dir: str | Path | None = None,
) -> None:
    """Atomically save ``model`` (never modified). A model over :data:`EXTERNAL_DATA_BYTES` (or with
    external data of its own, read from ``base_dir``) gets its weights in ``<name>.data`` beside the file,
    streamed one tensor at a time; both files land by rename from a private folder beside the target.
    ``transform(name, values)`` may change initializer values on the way (see
    :func:`onnxprune.graph.protos.write_external`)."""
    target = Path(path)
    try:
        external = transform is not None or any(is_external(t) for t in model.graph.initializer)
        if not external and model_nbytes(model) <= EXTERNAL_DATA_BYTES:
            with atomic_path(target) as tmp:
                onnx.save_model(model, str(tmp))
            return
        if transform is not None and model_nbytes(model) <= EXTERNAL_DATA_BYTES and base_dir is None:
            with atomic_path(target) as tmp:
                onnx.save_model(map_initializers(model, transform), str(tmp))
            return
        data_name = target.name + ".data"
        tmpdir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            write_external(model, tmpdir / target.name, data_name, transform, base_dir)
            for name in (data_name, target.name):  # the data first: the model never names a missing file
                os.chmod(tmpdir / name, _default_mode())
                os.replace(tmpdir / name, target.parent / name)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
    except OSError as e:
        raise OutputError(f"cannot write {target}: {e.strerror or e}") from None


def write_text(text: str, path: str | Path) -> None:
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
