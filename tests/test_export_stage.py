"""The export stage as users meet it (issue 17): ``compress IN [OUT]``, --force, no default data, --dry-run,
--html; the typed API with ``onnxprune.prune`` (torch-free, checked with torch hidden); the extras, --version,
``onnxprune env``; the README's Python block."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml

import onnxprune
from onnxprune.config.recipe import load_recipe
from onnxprune.extras import NO_ONNXRUNTIME
from onnxprune.runtime.sysinfo import cpu_flags, isa
from tests.builders import vgg_like, write_labeled_npz
from tests.test_cli import PREVIEW, assert_one_line_error, only_inputs_left, run

ROOT = Path(__file__).resolve().parents[1]
# Run before the code under test: makes the named top-level packages unimportable, as if not installed
# (importlib.util.find_spec sees an ImportError, an import a ModuleNotFoundError naming the package).
HIDE = """
import importlib.abc, sys
class _Hidden(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition('.')[0] in {hidden!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, _Hidden())
"""
TORCH = ("torch", "torchvision", "onnx2torch")


def hidden(code: str, hide: tuple[str, ...] = TORCH, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter with the packages ``hide`` unimportable."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", HIDE.format(hidden=set(hide)) + code],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=300,
    )


def cli_hidden(
    args: list[str], hide: tuple[str, ...] = TORCH, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """``onnxprune ARGS`` with the packages ``hide`` unimportable."""
    code = f"import runpy, sys\nsys.argv = ['onnxprune', *{[str(a) for a in args]!r}]\n"
    return hidden(code + "runpy.run_module('onnxprune', run_name='__main__')", hide, cwd)


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    path = tmp_path / "m.onnx"
    onnx.save(vgg_like(), str(path))
    return path


# -- compress IN [OUT] ----------------------------------------------------------------------------------
def test_without_out_the_model_goes_beside_the_input_and_is_not_overwritten(model_path: Path) -> None:
    code, text = run(["compress", model_path, "-s", "filter:0.5", *PREVIEW])
    target = model_path.with_name("m.pruned.onnx")
    assert code == 0, text
    assert f"wrote {target}" in text
    first = target.read_bytes()
    onnx.checker.check_model(onnx.load(str(target)), full_check=True)
    code, text = run(["compress", model_path, "-s", "filter:0.7", *PREVIEW])
    assert_one_line_error(code, text, "exists: pass --force")
    assert target.read_bytes() == first  # refused before any work: untouched
    code, text = run(["compress", model_path, "-s", "filter:0.7", *PREVIEW, "--force"])
    assert code == 0, text
    assert target.read_bytes() != first  # overwritten with the filter:0.7 model
    only_inputs_left(model_path.parent, {"m.onnx", "m.pruned.onnx"})


def test_out_argument_and_every_existing_output_are_refused_without_force(
    model_path: Path, tmp_path: Path
) -> None:
    out, report = tmp_path / "small.onnx", tmp_path / "r.json"
    code, text = run(["compress", model_path, out, "-s", "filter:0.5", *PREVIEW])
    assert code == 0, text
    assert out.exists()
    report.write_text("keep me")
    code, text = run(
        ["compress", model_path, tmp_path / "other.onnx", "-s", "filter:0.5", *PREVIEW, "--report", report]
    )
    assert_one_line_error(code, text, "r.json exists")
    assert report.read_text() == "keep me"
    only_inputs_left(tmp_path, {"m.onnx", "small.onnx", "r.json"})


@pytest.mark.parametrize("dry", [[], ["--dry-run"]])
def test_out_and_output_together_is_an_error(model_path: Path, tmp_path: Path, dry: list[str]) -> None:
    outputs = [tmp_path / "a.onnx", "-o", tmp_path / "b.onnx"]
    code, text = run(["compress", model_path, *outputs, "-s", "filter:0.5", *PREVIEW, *dry])
    assert_one_line_error(code, text, "given twice")
    only_inputs_left(tmp_path, {"m.onnx"})


def test_the_input_is_never_overwritten_even_with_force(model_path: Path, tmp_path: Path) -> None:
    before = model_path.read_bytes()
    via_link = tmp_path / "link.onnx"
    via_link.symlink_to(model_path)
    for target in (model_path, via_link):
        code, text = run(["compress", model_path, target, "-s", "filter:0.5", *PREVIEW, "--force"])
        assert_one_line_error(code, text, "is the input model")
    assert model_path.read_bytes() == before
    only_inputs_left(tmp_path, {"m.onnx", "link.onnx"})


def test_no_data_stops_before_any_work_and_lists_the_sources(tmp_path: Path) -> None:
    garbage = tmp_path / "m.onnx"
    garbage.write_bytes(b"not a model")  # never read: the missing data is found first
    code, text = run(["compress", garbage, "-s", "filter:0.5", "--method", "magnitude", "-q"])
    assert_one_line_error(code, text, "no data: give --data SOURCE")
    for source in ("fashion-mnist", "random", "image folder", ".npz", "module:function"):
        assert source in text
    only_inputs_left(tmp_path, {"m.onnx"})
    with pytest.raises(onnxprune.DataError, match="no data"):
        onnxprune.compress(vgg_like(), "filter:0.5")


def test_a_recipes_data_is_data(model_path: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "sparsity: filter:0.5\nmethod: magnitude\ntrain: {finetune_epochs: 0}\ndata: {source: random}\n"
    )
    code, text = run(["compress", model_path, "--config", recipe, "--no-bench", "-q"])
    assert code == 0, text
    assert (tmp_path / "m.pruned.onnx").exists()


def test_dry_run_prints_plan_and_recipe_writes_nothing_and_matches_the_run(
    model_path: Path, tmp_path: Path
) -> None:
    args = ["compress", model_path, "-s", "filter:0.5", "--align", "2", "--data", "random"]
    code, text = run([*args, "--dry-run", "--report", tmp_path / "r.json", "--html", tmp_path / "r.html"])
    assert code == 0, text
    only_inputs_left(tmp_path, {"m.onnx"})
    table, _, recipe_text = text.partition("# the resolved recipe")
    recipe = yaml.safe_load(recipe_text.partition("\n")[2])
    assert recipe["sparsity"] == [{"type": "filter", "ratio": 0.5}] and recipe["align"] == 2
    assert recipe["data"]["source"] == "random" and recipe["train"]["admm_epochs"] == 2
    kept = dict(re.findall(r"^(\S+)\s+\S+\s+\S+\s+(\d+/\d+)", table, re.M))
    load_recipe(recipe)  # the printed recipe is a valid recipe ...
    saved = tmp_path / "resolved.yaml"
    saved.write_text(yaml.safe_dump(recipe))
    report = tmp_path / "r.json"
    code, text = run(
        [
            "compress",
            model_path,
            "--config",
            saved,
            "--method",
            "magnitude",
            "--finetune-epochs",
            "0",
            "--no-bench",
            "-q",
            "--report",
            report,
        ]
    )
    assert code == 0, text
    groups = {g["name"]: f"{g['kept']}/{g['channels']}" for g in json.loads(report.read_text())["groups"]}
    assert kept and all(groups[name] == k for name, k in kept.items())  # ... that runs the plan printed


def test_dry_run_needs_no_torch(model_path: Path) -> None:
    proc = cli_hidden(["compress", model_path, "--target-macs", "0.5", "-d", "random", "--dry-run"])
    assert proc.returncode == 0, proc.stderr
    assert "MAC budget: target 0.500" in proc.stdout and "target_macs: 0.5" in proc.stdout
    only_inputs_left(model_path.parent, {"m.onnx"})


def test_html_report_is_one_self_contained_file(model_path: Path, tmp_path: Path) -> None:
    page, report = tmp_path / "r.html", tmp_path / "r.json"
    code, text = run(
        ["compress", model_path, "-s", "filter:0.5", *PREVIEW, "--html", page, "--report", report]
    )
    assert code == 0, text
    html = page.read_text()
    data = json.loads(report.read_text())
    assert data["outputs"]["html"] == str(page)
    for row in data["layers"]:
        assert f"<td>{row['node']}</td>" in html
    assert "Verification: pruned ≡ masked" in html and "PASS" in html
    assert "data:image/png;base64," in html  # the plot, embedded (matplotlib is in the dev install)
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", html)
    assert not list(tmp_path.glob(".*tmp*"))  # written by rename: no temporary file left


# -- the Python API -------------------------------------------------------------------------------------
def test_public_functions_stay_functions_whatever_was_imported() -> None:
    code = (
        "import importlib, pkgutil, inspect, onnxprune\n"
        "for m in pkgutil.walk_packages(onnxprune.__path__, 'onnxprune.'):\n"
        "    if not m.name.startswith(('onnxprune.train', 'onnxprune.testing')):\n"
        "        importlib.import_module(m.name)\n"
        "names = ['compress', 'prune', 'inspect', 'bench', 'profile']\n"
        "print(all(inspect.isfunction(getattr(onnxprune, n)) for n in names))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "True", proc.stderr


@pytest.mark.parametrize(
    ("public", "target"),
    [
        ("compress", "onnxprune.pipeline:compress"),
        ("prune", "onnxprune.pipeline:prune_without_training"),
        ("inspect", "onnxprune.inspection:inspect_model"),
        ("bench", "onnxprune.runtime.benchmark:bench"),
        ("profile", "onnxprune.runtime.profiling:profile"),
    ],
)
def test_public_signatures_mirror_the_implementations(public: str, target: str) -> None:
    import importlib

    module, _, name = target.partition(":")
    mine = inspect.signature(getattr(onnxprune, public))
    theirs = inspect.signature(getattr(importlib.import_module(module), name))
    assert [(p.name, p.kind, p.default, p.annotation) for p in mine.parameters.values()] == [
        (p.name, p.kind, p.default, p.annotation) for p in theirs.parameters.values()
    ]
    assert mine.return_annotation != inspect.Signature.empty
    assert not any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in mine.parameters.values())


def test_result_types_import_from_onnxprune_without_torch() -> None:
    proc = hidden(
        "import sys, onnxprune\n"
        "from onnxprune import CompressResult, PruneResult, Report, SparsitySpec, TrainOptions, Gates\n"
        "print(CompressResult.__name__, PruneResult.__name__, 'torch' in sys.modules)\n"
    )
    assert proc.stdout.strip() == "CompressResult PruneResult False", proc.stderr


def test_prune_with_torch_hidden_prunes_verifies_and_writes(tmp_path: Path) -> None:
    onnx.save(vgg_like(), str(tmp_path / "m.onnx"))
    proc = hidden(
        "import sys, onnx, onnxprune\n"
        "r = onnxprune.prune('m.onnx', 'filter:0.5', output='p.onnx')\n"
        "kept = {k: int(v.sum()) for k, v in r.masks.items()}\n"
        "print(r.verification.passed, len(onnx.load('p.onnx').graph.node), kept, 'torch' in sys.modules)\n",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    passed, nodes, *rest = proc.stdout.split(" ", 2)
    assert passed == "True" and int(nodes) == len(vgg_like().graph.node)
    assert rest[0].strip().endswith("False")  # torch never imported (nor importable)


def test_prune_takes_the_callers_masks_and_refuses_bad_ones() -> None:
    plan = onnxprune.inspect(vgg_like()).plan
    g = plan.prunable[1]
    mine = {g.name: np.arange(g.channels) % 3 == 0}
    result = onnxprune.prune(vgg_like(), masks=mine)
    assert result.verification.passed and result.verification.max_rel_error <= 1e-4
    np.testing.assert_array_equal(result.masks[g.name], mine[g.name])
    assert all(m.all() for name, m in result.masks.items() if name != g.name)  # the others keep all
    weights = {t.name: t for t in result.model.graph.initializer}
    source = g.sources[0]
    assert weights[source.initializer].dims[source.axis] == mine[g.name].sum()
    bad = [
        ({"nope": np.ones(3, bool)}, "no group 'nope'"),
        ({g.name: np.ones(g.channels + 1, bool)}, "must be bool of shape"),
        ({g.name: np.zeros(g.channels, bool)}, "removes every channel"),
        ({g.name: np.ones(g.channels)}, "must be bool"),
    ]
    for masks, needle in bad:
        with pytest.raises(onnxprune.SpecError, match=re.escape(needle)):
            onnxprune.prune(vgg_like(), masks=masks)


@pytest.mark.torch
def test_torch_free_masks_equal_the_torch_magnitude_path() -> None:
    """The preview's masks through the torch import (onnx2torch, train_pruned('magnitude')) and without."""
    from onnxprune.config.settings import TrainOptions
    from onnxprune.pipeline.loading import load, read_data
    from onnxprune.pipeline.planning import analyze_model
    from onnxprune.pipeline.resolve import Given, Outputs, resolve
    from onnxprune.pipeline.training import plan_and_train
    from onnxprune.runtime.timing import PhaseClock

    cases = [(s, "source") for s in ("filter:0.5", "filter:0.7", "channel:0.5")] + [("filter:0.5", "group")]
    for sparsity, importance in cases:
        train = TrainOptions(finetune_epochs=0, importance=importance)
        given = Given.of(sparsity, "random", method="magnitude", train=train)
        config = resolve(vgg_like(), None, given, Outputs())
        clock = PhaseClock()
        loaded = load(config, clock)
        samples = read_data(config, loaded, clock)
        _, trained = plan_and_train(config, loaded, samples, analyze_model(loaded, samples, clock), clock)
        recipe = {"train": {"importance": importance}}
        free = onnxprune.prune(vgg_like(), sparsity, data="random", recipe=recipe).masks
        assert set(free) == set(trained.masks)
        for name, keep in free.items():
            np.testing.assert_array_equal(
                keep, trained.masks[name], err_msg=f"{sparsity} {importance}: {name}"
            )


def test_cli_preview_runs_with_torch_hidden_and_training_names_the_extra(tmp_path: Path) -> None:
    onnx.save(vgg_like(), str(tmp_path / "m.onnx"))
    proc = cli_hidden(
        ["compress", "m.onnx", "-s", "filter:0.5", *PREVIEW, "--report", "r.json"], cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["verification"]["passed"] and report["config"]["trained"] is False
    assert (tmp_path / "m.pruned.onnx").exists()
    proc = cli_hidden(
        ["compress", "m.onnx", "out.onnx", "-s", "filter:0.5", "--data", "random", "-q"], cwd=tmp_path
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: compress trains with torch (torch is not installed): pip install 'onnxprune[train]' "
        "(without it: --method magnitude --finetune-epochs 0, onnxprune.prune, inspect, bench, profile)"
    ]
    only_inputs_left(tmp_path, {"m.onnx", "m.pruned.onnx", "r.json"})


@pytest.mark.torch  # the block trains
def test_readme_python_block_runs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    (block,) = re.findall(r"^## Python API\n\n```python\n(.*?)^```", readme, re.S | re.M)
    onnx.save(vgg_like(), str(tmp_path / "model.onnx"))
    write_labeled_npz(tmp_path / "data.npz", samples=96, channels=3)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(block, "README.md", "exec"), {"__name__": "readme"})
    finally:
        os.chdir(cwd)
    for name in ("model.pruned.onnx", "model.magnitude.onnx", "report.html"):
        assert (tmp_path / name).exists(), name


# -- packaging ------------------------------------------------------------------------------------------
def test_version_is_the_projects() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert onnxprune.__version__ == project["version"]
    code, text = run(["--version"])
    assert code == 0 and text.strip() == f"onnxprune, version {project['version']}"
    extras = project["optional-dependencies"]
    assert {"cpu", "gpu", "train", "plot", "dev"} <= set(extras)
    assert any(d.startswith("onnxruntime-gpu") for d in extras["gpu"])
    assert not any(d.startswith("onnxruntime") for d in project["dependencies"])  # cpu or gpu, never both


def test_env_reports_versions_cpu_isa_and_providers() -> None:
    code, text = run(["env", "--json"])
    assert code == 0, text
    info = json.loads(text)
    assert (
        info["versions"]["onnxprune"] == onnxprune.__version__
        and info["versions"]["onnx"] == onnx.__version__
    )
    assert "CPUExecutionProvider" in info["onnxruntime_providers"]
    assert info["cpu"]["cores"] >= 1 and isinstance(info["gpus"], list)
    code, text = run(["env"])
    assert code == 0 and "CPU ISA" in text and "ORT providers" in text
    flags = cpu_flags("processor : 0\nflags : fpu sse avx2 fma avx512f avx512_vnni\n")
    assert isa(flags, "x86_64") == {
        "AVX2": True,
        "FMA": True,
        "AVX-512": True,
        "AVX512-VNNI": True,
        "AVX512-BF16": False,
        "AVX-VNNI": False,
        "AMX-INT8": False,
    }
    assert isa(cpu_flags("Features : fp asimd asimddp\n"), "aarch64") == {
        "DOTPROD": True,
        "I8MM": False,
        "SVE": False,
    }


def test_without_onnxruntime_commands_name_the_extra_and_env_still_runs(model_path: Path) -> None:
    proc = cli_hidden(["inspect", model_path], hide=("onnxruntime",))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {NO_ONNXRUNTIME}"]
    assert "pip install 'onnxprune[cpu]'" in NO_ONNXRUNTIME and "'onnxprune[gpu]'" in NO_ONNXRUNTIME
    proc = cli_hidden(["env"], hide=("onnxruntime",))
    assert proc.returncode == 0, proc.stderr
    assert f"ORT providers    none: {NO_ONNXRUNTIME}" in proc.stdout
    proc = hidden(
        "import onnxprune\ntry:\n    onnxprune.inspect('x.onnx')\n"
        "except onnxprune.DependencyError as e:\n    print(e)\n",
        hide=("onnxruntime",),
    )
    assert "pip install 'onnxprune[cpu]'" in proc.stdout, proc.stderr
