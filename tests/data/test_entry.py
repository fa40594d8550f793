"""``module:function`` data sources: loaders, batch formats, split mappings, caps and every error case.

Each test writes its own module (a unique name) into ``tmp_path`` and runs from there: entry points are
imported from the working directory.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from onnxprune.data import ArrayData, DataSplits, Dims, load_data
from onnxprune.data.entry import is_entry_point
from onnxprune.errors import DataError
from tests.data.helpers import xd, xs, ys

VEC3: Dims = [None, 3]
TWO = {"a": [None, 3], "b": [None, 2]}

Entry = Callable[..., str]


@pytest.fixture
def entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Entry]:
    """Write a module with ``body`` (numpy imported as np) and return its ``module:function`` source."""
    monkeypatch.chdir(tmp_path)
    written: list[str] = []

    def make(body: str, func: str = "make") -> str:
        name = f"entry_{uuid.uuid4().hex}"
        (tmp_path / f"{name}.py").write_text("import numpy as np\n\n" + textwrap.dedent(body))
        importlib.invalidate_caches()  # the directory's finder may have cached its listing already
        written.append(name)
        return f"{name}:{func}"

    yield make
    for name in written:
        sys.modules.pop(name, None)


def module_of(source: str) -> object:
    return sys.modules[source.split(":")[0]]


def sample_ids(data: ArrayData) -> list[int]:
    """Sample i has x[i] = (i, i + 0.25, i + 0.5) in these tests."""
    return [int(v) for v in xs(data)[:, 0]]


# float64 samples whose first feature is the sample index; label = index % 4
INDEXED = """
def samples(n, start=0):
    i = np.arange(start, start + n, dtype=np.float64)[:, None]
    return i + np.array([0.0, 0.25, 0.5]), (np.arange(start, start + n) % 4)
"""


def check_indexed(splits: DataSplits, n: int) -> None:
    """Every split holds distinct samples of 0..n-1, with the labels that belong to them."""
    ids = sample_ids(splits.train) + sample_ids(splits.val)
    assert sorted(ids) == list(range(n))
    for part in (splits.train, splits.val):
        x = xs(part)
        assert x.dtype == np.float32
        np.testing.assert_array_equal(x[:, 1:] - x[:, :1], np.tile([0.25, 0.5], (len(x), 1)))
        assert ys(part).dtype == np.int64
        np.testing.assert_array_equal(ys(part), x[:, 0].astype(np.int64) % 4)


# --- loaders and batch formats ----------------------------------------------------------------------------


@pytest.mark.torch
def test_torch_dataloader_with_labels(entry: Entry) -> None:
    source = entry(
        INDEXED
        + """
import torch
from torch.utils.data import DataLoader, TensorDataset

def make():
    x, y = samples(20)
    return DataLoader(TensorDataset(torch.tensor(x), torch.tensor(y)), batch_size=6, shuffle=False)
"""
    )
    splits = load_data(source, VEC3, val_fraction=0.25, seed=0)
    assert splits.name == source and splits.labeled
    assert len(splits.train) == 15 and len(splits.val) == 5
    assert splits.test is splits.val  # no test split of its own
    check_indexed(splits, 20)
    again = load_data(source, VEC3, val_fraction=0.25, seed=0)
    assert sample_ids(again.val) == sample_ids(splits.val)  # the split is seeded
    other = load_data(source, VEC3, val_fraction=0.25, seed=1)
    assert sample_ids(other.val) != sample_ids(splits.val)


@pytest.mark.torch
def test_torch_dataloader_without_labels(entry: Entry) -> None:
    source = entry(
        INDEXED
        + """
import torch
from torch.utils.data import DataLoader, TensorDataset

def make():
    return DataLoader(TensorDataset(torch.tensor(samples(9)[0])), batch_size=4)
"""
    )
    splits = load_data(source, VEC3, val_fraction=0.2, seed=0)
    assert not splits.labeled
    assert splits.train.y is None and splits.val.y is None and splits.test.y is None
    assert len(splits.train) == 7 and len(splits.val) == 2
    assert sorted(sample_ids(splits.train) + sample_ids(splits.val)) == list(range(9))


def test_list_of_numpy_batches_becomes_float32(entry: Entry) -> None:
    source = entry(
        INDEXED
        + """
def make():
    x = samples(7)[0]
    return [x[:4], x[4:]]
"""
    )
    splits = load_data(source, VEC3, val_fraction=0.3, seed=0)
    assert not splits.labeled and len(splits.train) == 5 and len(splits.val) == 2
    for part in (splits.train, splits.val):
        assert xs(part).dtype == np.float32
    assert sorted(sample_ids(splits.train) + sample_ids(splits.val)) == list(range(7))


@pytest.mark.parametrize("label_key", ["y", "label", "labels"])
def test_dict_batches(entry: Entry, label_key: str) -> None:
    source = entry(
        INDEXED
        + f"""
def make():
    for start in (0, 5, 10):
        x, y = samples(5, start)
        yield {{"x": x, "{label_key}": y}}
"""
    )
    splits = load_data(source, {"x": VEC3}, val_fraction=0.2, seed=0)
    assert len(splits.train) == 12 and len(splits.val) == 3
    check_indexed(splits, 15)


def test_train_and_test_mapping(entry: Entry) -> None:
    source = entry(
        INDEXED
        + """
def make():
    return {"train": [samples(10)], "test": [samples(4, 100)]}
"""
    )
    splits = load_data(source, VEC3, val_fraction=0.2, seed=0)
    assert len(splits.train) == 8 and len(splits.val) == 2  # val split off train
    check_indexed(splits, 10)
    assert sample_ids(splits.test) == [100, 101, 102, 103]
    np.testing.assert_array_equal(ys(splits.test), [0, 1, 2, 3])


def test_train_val_test_mapping_is_used_as_given(entry: Entry) -> None:
    source = entry(
        INDEXED
        + """
def make():
    return {"train": [samples(6)], "val": [samples(3, 50)], "test": [samples(2, 80)]}
"""
    )
    splits = load_data(source, VEC3, val_fraction=0.5, seed=0)
    assert sample_ids(splits.train) == list(range(6))  # not split again
    assert sample_ids(splits.val) == [50, 51, 52]
    assert sample_ids(splits.test) == [80, 81]
    np.testing.assert_array_equal(ys(splits.val), [2, 3, 0])


def test_train_and_val_mapping_tests_on_val(entry: Entry) -> None:
    source = entry(
        INDEXED
        + """
def make():
    return {"train": [samples(6)], "val": [samples(3, 50)], "test": None}
"""
    )
    splits = load_data(source, VEC3)
    assert len(splits.train) == 6 and splits.test is splits.val and sample_ids(splits.val) == [50, 51, 52]


def test_max_samples_stops_reading(entry: Entry) -> None:
    source = entry(
        INDEXED
        + """
READ = []

def batches(start, n):
    for b in range(n):
        READ.append(start + b)
        yield samples(5, start + 5 * b)

def make():
    READ.clear()
    return {"train": batches(0, 10), "test": batches(1000, 10)}
"""
    )
    splits = load_data(source, VEC3, max_samples=12, val_fraction=0.25, seed=0)
    assert len(splits.train) == 9 and len(splits.val) == 3
    check_indexed(splits, 12)  # the first 12 samples
    assert sample_ids(splits.test) == list(range(1000, 1012))
    assert module_of(source).READ == [0, 1, 2, 1000, 1001, 1002]  # type: ignore[attr-defined]


# --- multi-input models -----------------------------------------------------------------------------------

# sample i: a = (i, i, i), b = (-i, -i), y = i % 3
TWO_INPUTS = """
def parts(n, start=0):
    i = np.arange(start, start + n, dtype=np.float64)[:, None]
    return np.repeat(i, 3, axis=1), -np.repeat(i, 2, axis=1), np.arange(start, start + n) % 3
"""


def check_two(splits: DataSplits, n: int, labeled: bool = True) -> None:
    ids: list[int] = []
    for part in (splits.train, splits.val):
        x = xd(part)
        assert list(x) == ["a", "b"]
        assert x["a"].shape[1:] == (3,) and x["b"].shape[1:] == (2,)
        assert x["a"].dtype == np.float32 and x["b"].dtype == np.float32
        np.testing.assert_array_equal(x["b"], -x["a"][:, :2])
        if labeled:
            np.testing.assert_array_equal(ys(part), x["a"][:, 0].astype(np.int64) % 3)
        else:
            assert part.y is None
        ids += [int(v) for v in x["a"][:, 0]]
    assert sorted(ids) == list(range(n))


@pytest.mark.parametrize(
    ("batch", "labeled"),
    [
        ("(a, b, y)", True),
        ("[a, b, y]", True),
        ("{'a': a, 'b': b, 'y': y}", True),
        ("{'b': b, 'a': a, 'label': y, 'ignored': a}", True),
        ("((a, b), y)", True),
        ("({'a': a, 'b': b}, y)", True),
        ("(a, b)", False),
        ("{'a': a, 'b': b}", False),
    ],
)
def test_two_input_batches(entry: Entry, batch: str, labeled: bool) -> None:
    source = entry(
        TWO_INPUTS
        + f"""
def make():
    for start in (0, 4):
        a, b, y = parts(4, start)
        yield {batch}
"""
    )
    splits = load_data(source, TWO, val_fraction=0.25, seed=0)
    assert len(splits.train) == 6 and len(splits.val) == 2 and splits.labeled == labeled
    check_two(splits, 8, labeled)


@pytest.mark.torch
def test_two_input_torch_loader(entry: Entry) -> None:
    source = entry(
        TWO_INPUTS
        + """
import torch
from torch.utils.data import DataLoader, TensorDataset

def make():
    a, b, y = (torch.tensor(p) for p in parts(10))
    return {"train": DataLoader(TensorDataset(a, b, y), batch_size=3)}
"""
    )
    splits = load_data(source, TWO, val_fraction=0.2, seed=0)
    check_two(splits, 10)


# --- labels -----------------------------------------------------------------------------------------------


def test_integral_float_labels_become_int64(entry: Entry) -> None:
    source = entry("def make():\n    return [(np.zeros((4, 3)), np.array([[0.0], [2.0], [1.0], [2.0]]))]\n")
    splits = load_data(source, VEC3, val_fraction=0.25, seed=0)
    labels = np.concatenate([ys(splits.train), ys(splits.val)])
    assert labels.dtype == np.int64 and sorted(labels.tolist()) == [0, 1, 2, 2]


def test_non_integral_labels_are_rejected(entry: Entry) -> None:
    source = entry("def make():\n    return [(np.zeros((3, 3)), np.array([0.0, 1.5, 2.0]))]\n")
    with pytest.raises(DataError, match=r"batch 0: labels must be class indices"):
        load_data(source, VEC3)


# --- errors -----------------------------------------------------------------------------------------------


def test_module_not_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"cannot import module 'no_such_module_xyz'"):
        load_data("no_such_module_xyz:make", VEC3)


def test_module_import_raises(entry: Entry) -> None:
    source = entry("1 / 0\n")
    with pytest.raises(DataError, match=r"importing 'entry_\w+' raised ZeroDivisionError"):
        load_data(source, VEC3)


@pytest.mark.parametrize("func", ["nope", "NOT_CALLABLE"])
def test_no_such_function(entry: Entry, func: str) -> None:
    source = entry("NOT_CALLABLE = 3\n\ndef make():\n    return []\n", func=func)
    with pytest.raises(DataError, match=rf"module 'entry_\w+' has no function '{func}'"):
        load_data(source, VEC3)


def test_function_raises(entry: Entry) -> None:
    source = entry("def make():\n    raise ValueError('no dataset here')\n")
    with pytest.raises(DataError, match=r"raised ValueError: no dataset here"):
        load_data(source, VEC3)


def test_iterator_raises(entry: Entry) -> None:
    source = entry("def make():\n    yield np.zeros((2, 3))\n    raise RuntimeError('disk gone')\n")
    with pytest.raises(DataError, match=r"\(train\): reading batches raised RuntimeError: disk gone"):
        load_data(source, VEC3)


@pytest.mark.parametrize(
    ("returned", "needle"),
    [
        ("{'train': [], 'tset': []}", r"keys \['train', 'tset'\]: expected 'train' and optionally"),
        ("{'val': [np.zeros((2, 3))]}", r"keys \['val'\]: expected 'train'"),
        ("{}", r"keys \[\]: expected 'train'"),
        ("{'train': None, 'val': [np.zeros((2, 3))]}", r"expected 'train'"),
        ("{'train': [np.zeros((2, 3))], 0: []}", r"keys \[0, 'train'\]"),
    ],
)
def test_bad_mappings(entry: Entry, returned: str, needle: str) -> None:
    source = entry(f"def make():\n    return {returned}\n")
    with pytest.raises(DataError, match=needle):
        load_data(source, VEC3)


@pytest.mark.parametrize(
    ("body", "dims", "needle"),
    [
        ("return []", VEC3, r"\(train\): the loader yielded no batches"),
        ("return {'train': [np.zeros((2, 3))], 'test': iter([])}", VEC3, r"\(test\): the loader yielded no"),
        (
            "return [(np.zeros((2, 3)), np.zeros(2)), np.zeros((2, 3))]",
            VEC3,
            r"batch 1: some batches have labels and some do not",
        ),
        (
            "return [np.zeros((2, 3)), (np.zeros((2, 3)), np.zeros(2))]",
            VEC3,
            r"batch 1: some batches have labels and some do not",
        ),
        (
            "return [(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros(2))]",
            VEC3,
            r"batch 0: a tuple of 3 items does not fit a model with 1 input\(s\)",
        ),
        (
            "return [(np.zeros((2, 3)),) * 4]",
            TWO,
            r"batch 0: a tuple of 4 items does not fit a model with 2 input\(s\)",
        ),
        ("return [(np.zeros((2, 3)),)]", TWO, r"batch 0: a tuple of 1 items does not fit"),
        (
            "return [np.zeros((2, 3)), np.zeros((2, 4))]",
            VEC3,
            r"input 'input' has batches of different sample shapes \[\(3,\), \(4,\)\]",
        ),
        (
            "return [{'a': np.zeros((2, 3)), 'c': np.zeros((2, 2))}]",
            TWO,
            r"batch 0: no array for model input 'b' \(keys: \['a', 'c'\]\)",
        ),
        ("return [np.zeros((2, 3))]", TWO, r"batch 0: one array for a model with inputs \['a', 'b'\]"),
        ("return [3.0, 4.0]", VEC3, r"batch 0: expected a batch array, got float"),
        ("return 42", VEC3, r"expected a DataLoader or an iterable of batches, got int"),
        ("return {'train': 42}", VEC3, r"\(train\): expected a DataLoader .* got int"),
        ("return [(np.zeros((5, 3)), np.zeros(4))]", VEC3, r"batch 0: 5 samples but 4 labels"),
        (
            "return [(np.zeros((4, 3)), np.zeros(3)), (np.zeros((3, 3)), np.zeros(4))]",
            VEC3,
            r"batch 0: 4 samples but 3 labels",
        ),
        (
            "return [(np.zeros((4, 3)), np.zeros((3, 2)))]",
            TWO,
            r"batch 0: inputs have different sample counts \{'a': 4, 'b': 3\}",
        ),
    ],
)
def test_batch_errors(entry: Entry, body: str, dims: Dims | dict[str, Dims], needle: str) -> None:
    source = entry(f"def make():\n    {body}\n")
    with pytest.raises(DataError, match=needle):
        load_data(source, dims)


def test_loader_must_fit_the_model(entry: Entry) -> None:
    source = entry("def make():\n    return [np.zeros((4, 5))]\n")
    with pytest.raises(DataError, match=r"has samples of shape \(5,\) but the model input is \(\?, 3\)"):
        load_data(source, VEC3)


# --- is_entry_point ---------------------------------------------------------------------------------------


def test_is_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert is_entry_point("pkg.mod:fn") and is_entry_point("my_data:loader")
    (tmp_path / "data:v2").write_text("")  # an existing file whose name looks like an entry point
    assert not is_entry_point("data:v2")
    for text in (
        "C:\\x",
        "C:\\data\\train.npz",
        "fashion-mnist",
        "mod:fn:x",
        "mod:",
        ":fn",
        "1mod:fn",
        "m:f-1",
    ):
        assert not is_entry_point(text), text
