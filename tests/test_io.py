from __future__ import annotations

from pathlib import Path

import pytest

from onnxprune.errors import OutputError
from onnxprune.io import atomic_path, check_outputs, save_model, write_text
from tests.builders import vgg_like


def test_atomic_path_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_keeps_suffix_and_renames(tmp_path: Path) -> None:
    target = tmp_path / "plot.png"
    with atomic_path(target) as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path
        tmp.write_bytes(b"x")
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]


def test_outputs_get_the_usual_file_mode(tmp_path: Path) -> None:
    import os

    umask = os.umask(0o022)
    try:
        write_text("x", tmp_path / "r.json")
    finally:
        os.umask(umask)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o644


def test_check_outputs(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    check_outputs([model], [tmp_path / "p.onnx", None])
    with pytest.raises(OutputError, match="is the input model"):
        check_outputs([model], [tmp_path / "." / "m.onnx"])
    with pytest.raises(OutputError, match="given twice"):
        check_outputs([model], [tmp_path / "a", tmp_path / "a"])
    with pytest.raises(OutputError, match="is a directory"):
        check_outputs([model], [tmp_path])
    with pytest.raises(OutputError, match="does not exist"):
        check_outputs([model], [tmp_path / "x" / "y.onnx"])
    with pytest.raises(OutputError, match="not writable"):
        check_outputs([model], ["/proc/y.onnx"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_save_model_and_text(tmp_path: Path) -> None:
    save_model(vgg_like(), tmp_path / "m.onnx")
    write_text("{}", tmp_path / "r.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "r.json"]
