"""Large-model support, on small models with the thresholds lowered: external data in and out, atomic
saves, streamed masked models, and helpers that do not copy the weights."""

from __future__ import annotations

import mmap
import tracemalloc
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune import io as oio
from onnxprune.config.sparsity import keep_counts, parse_sparsity
from onnxprune.errors import OutputError
from onnxprune.graph import protos
from onnxprune.graph.analysis import analyze
from onnxprune.graph.edit import mask_model, prune_model, write_masked
from onnxprune.graph.load import load_model, normalize
from onnxprune.graph.probe import channel_norms, magnitude_mask
from onnxprune.graph.shapes import infer_shapes
from onnxprune.graph.verify import compare_models, verification_inputs, verify_pruned

SHAPE = (1, 3, 8, 8)


def big_model(width: int = 512, seed: int = 0) -> onnx.ModelProto:
    """Conv -> Relu -> Flatten -> Gemm(width) -> Relu -> Gemm(10), dynamic batch: a few MB of weights."""
    rng = np.random.default_rng(seed)

    def init(name: str, *shape: int) -> TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.1).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["input", "c.w", "c.b"], ["c"], name="/conv", pads=[1] * 4),
        helper.make_node("Relu", ["c"], ["r"], name="/relu"),
        helper.make_node("Flatten", ["r"], ["f"], name="/flatten", axis=1),
        helper.make_node("Gemm", ["f", "g0.w", "g0.b"], ["g0"], name="/fc0", transB=1),
        helper.make_node("Relu", ["g0"], ["h0"], name="/relu0"),
        helper.make_node("Gemm", ["h0", "g1.w", "g1.b"], ["logits"], name="/fc1", transB=1),
    ]
    inits = [
        init("c.w", 16, 3, 3, 3),
        init("c.b", 16),
        init("g0.w", width, 16 * 64),
        init("g0.b", width),
        init("g1.w", 10, width),
        init("g1.b", 10),
    ]
    graph = helper.make_graph(
        nodes,
        "big",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.metadata_props.add(key="origin", value="test_large")
    return model


@pytest.fixture
def small_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Everything over 64 KiB counts as large: saved with external data, run and checked through files."""
    monkeypatch.setattr(oio, "EXTERNAL_DATA_BYTES", 64 * 1024)
    monkeypatch.setattr(protos, "LARGE_MODEL_BYTES", 64 * 1024)


def _external_file(tmp_path: Path, model: onnx.ModelProto) -> Path:
    path = tmp_path / "in.onnx"
    protos.write_external(model, path)
    return path


def _masks(model: onnx.ModelProto, ratio: str = "filter:0.5") -> tuple:
    plan = analyze(model, SHAPE)
    keep = keep_counts(plan, parse_sparsity(ratio))
    masks = {
        n: magnitude_mask(channel_norms(model, plan.group(n)), k, plan.group(n).cover_sets)
        for n, k in keep.items()
    }
    return plan, masks


def test_write_external_round_trips_aligned_and_leaves_the_model_alone(tmp_path: Path) -> None:
    model = big_model()
    before = model.SerializeToString()
    path = _external_file(tmp_path, model)
    assert model.SerializeToString() == before  # not turned into external references in place
    skeleton = onnx.load(str(path), load_external_data=False)
    ext = [t for t in skeleton.graph.initializer if protos.is_external(t)]
    assert {t.name for t in ext} == {"c.w", "g0.w", "g0.b", "g1.w"}  # over 1 KiB; the small biases inline
    assert all(protos.external_info(t)[1] % protos.DATA_ALIGN == 0 for t in ext)
    assert path.stat().st_size < 10_000  # the .onnx file holds the structure only
    loaded, external = load_model(path)
    assert external
    assert not any(protos.is_external(t) for t in loaded.graph.initializer)
    x = np.random.default_rng(1).standard_normal((4, 3, 8, 8)).astype(np.float32)
    assert compare_models(model, loaded, [x]).max_rel_error == 0.0
    assert compare_models(model, path, [x]).max_rel_error == 0.0


def test_tensor_array_is_a_view_not_a_copy(tmp_path: Path) -> None:
    model = big_model()
    t = next(t for t in model.graph.initializer if t.name == "g0.w")
    a = protos.tensor_array(t)
    assert isinstance(a.base, bytes) or isinstance(a.base.base, bytes)  # a view of the one bytes object
    assert not a.flags.writeable and not a.flags.owndata
    np.testing.assert_array_equal(a, numpy_helper.to_array(t))
    # external data: a read-only map of the data file, sharing memory with the mapping itself
    path = _external_file(tmp_path, model)
    skeleton = onnx.load(str(path), load_external_data=False)
    ext = next(t for t in skeleton.graph.initializer if t.name == "g0.w")
    m = protos.tensor_array(ext, tmp_path)
    base = m
    while base is not None and not isinstance(base, mmap.mmap):
        base = base.base
    assert isinstance(base, mmap.mmap)  # backed by the mapping itself: no copy in memory
    assert not m.flags.writeable
    np.testing.assert_array_equal(m, a)


def test_norms_and_masking_do_not_copy_whole_tensors() -> None:
    """channel_norms squares in blocks and write_masked copies one tensor at a time: numpy's traced peak
    stays near one weight's size, where ``to_array(t).astype(float64)`` would take 3x."""
    model = big_model(width=2048)  # g0.w: 2048 x 1024 float32 = 8 MiB
    size = 2048 * 1024 * 4
    plan = analyze(model, SHAPE)
    g = next(g for g in plan.prunable if g.source_node == "/fc0")
    tracemalloc.start()
    try:
        norms = channel_norms(model, g, chunk_bytes=2**20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * size  # the bytes protobuf returns (1x) plus a 1 MiB float64 block
    w = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "g0.w")).astype(np.float64)
    b = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "g0.b")).astype(np.float64)
    np.testing.assert_allclose(norms, np.sqrt((w**2).sum(1) + b**2), rtol=1e-12)


def test_weightless_shapes_equal_full_shapes() -> None:
    model = big_model()
    light = protos.weightless(model, max_bytes=1024)
    assert not any(t.name == "g0.w" for t in light.graph.initializer)
    assert any(vi.name == "g0.w" for vi in light.graph.input)
    assert light.ByteSize() < 2_000  # the weights are not in it
    shapes = infer_shapes(model, SHAPE)
    assert shapes["logits"] == (1, 10) and shapes["g0.w"] == (512, 1024)


def test_shell_copies_everything_but_initializers() -> None:
    model = big_model()
    s = protos.shell(model)
    assert len(s.graph.initializer) == 0
    assert [n.name for n in s.graph.node] == [n.name for n in model.graph.node]
    assert s.opset_import == model.opset_import and s.metadata_props == model.metadata_props
    again = protos.copy_model(model)
    assert again.SerializeToString() == model.SerializeToString()


def test_onnx_side_surgery_on_external_data_model(tmp_path: Path, small_limits: None) -> None:
    model = big_model()
    src = _external_file(tmp_path, model)
    loaded, external = load_model(src)
    assert external
    norm = normalize(loaded, inplace=True)
    assert norm.model is loaded
    plan, masks = _masks(norm.model)
    masked_path = tmp_path / "masked.onnx"
    write_masked(norm.model, plan, masks, masked_path)
    x = verification_inputs(SHAPE, 0)
    assert compare_models(mask_model(norm.model, plan, masks), masked_path, x).max_rel_error == 0.0
    pruned = prune_model(norm.model, plan, masks)
    assert protos.model_nbytes(pruned) < protos.model_nbytes(norm.model)
    result = verify_pruned(masked_path, pruned, x)  # checker and sessions go through files (limits lowered)
    assert result.passed
    out = tmp_path / "out.onnx"
    oio.save_model(pruned, out)
    assert (tmp_path / "out.onnx.data").exists()
    assert not any(protos.is_external(t) for t in pruned.graph.initializer)  # not changed by the save
    again, external = load_model(out)
    assert external
    assert compare_models(pruned, again, x).max_rel_error == 0.0
    assert [n.name for n in again.graph.node] == [n.name for n in model.graph.node]
    assert again.opset_import == model.opset_import
    assert {p.key: p.value for p in again.metadata_props} == {"origin": "test_large"}


@pytest.mark.torch
def test_compress_large_path_external_in_and_out(tmp_path: Path, small_limits: None) -> None:
    from onnxprune.pipeline import TrainOptions, compress

    src = _external_file(tmp_path, big_model())
    out, emitted = tmp_path / "p.onnx", tmp_path / "m.onnx"
    result = compress(
        src,
        "filter:0.5",
        data="random",
        input_shape=SHAPE,
        method="magnitude",
        train=TrainOptions(finetune_epochs=0),
        max_samples=16,
        output=out,
        emit_masked=emitted,
        bench_batches=(),
        quiet=True,
    )
    assert result.masked is None  # large: the masked model was streamed to a file, never held
    assert result.report.verification.passed
    for p in (out, emitted):
        assert p.with_name(p.name + ".data").exists()
        assert load_model(p)[1]
    x = verification_inputs(SHAPE, 3)
    assert compare_models(result.model, out, x).max_rel_error == 0.0
    assert compare_models(emitted, out, x).max_rel_error <= 1e-4  # pruned reproduces the emitted masked
    assert src.exists() and load_model(src)[1]


def test_save_is_atomic_and_never_touches_the_input(
    tmp_path: Path, small_limits: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = big_model()
    src = _external_file(tmp_path, model)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(OutputError, match="input model"):
        oio.check_outputs([src], [src])

    out = tmp_path / "out.onnx"
    oio.save_model(model, out)  # a first, good save
    good = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("out.onnx")}
    assert set(good) == {"out.onnx", "out.onnx.data"}

    real = protos.write_external

    def failing(*args: object, **kwargs: object) -> None:
        real(*args, **kwargs)  # type: ignore[arg-type]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(oio, "write_external", failing)
    with pytest.raises(OutputError, match="No space left"):
        oio.save_model(big_model(seed=1), out)
    now = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert {k: v for k, v in now.items() if k.startswith("out.onnx")} == good  # the old output intact
    assert {k: v for k, v in now.items() if k in before} == before  # the input untouched
    assert set(now) == set(before) | set(good)  # no temporary left behind
