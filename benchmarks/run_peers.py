"""ADMM against the peers (issue 20): Torch-Pruning's pruners and onnxprune on the same references.

    python -m benchmarks.run_peers                              # 3 archs x 5 methods x 4 ratios x 3 seeds
    python -m benchmarks.run_peers --arch vgg --ratios 0.7 --seeds 0 --epochs 1 --max-samples 1000 \\
        --out /tmp/peers_smoke.json                             # smoke: runs, numbers are noise
    python -m benchmarks.run_peers --render-only                # table and plots from the JSON

Methods (``--methods``): ``tp-oneshot``, ``tp-iterative``, ``tp-gsl`` (Torch-Pruning, the ``peers`` extra;
see :mod:`benchmarks.peers_tp`), ``onnxprune-admm`` and ``onnxprune-magnitude`` (``onnxprune.compress``,
``filter:R``). Every method gets the same data (the seeded 90 % train split onnxprune makes of the first
``--max-samples`` training images), the same augmentation (crop, flip), batch size, optimizer (SGD,
Nesterov), lr, weight decay, warm-up + cosine schedule and the same total epochs E (onnxprune-admm: E//2
ADMM + the rest retraining; magnitude: E retraining; tp-iterative: K prune steps each followed by E/K
epochs; tp-gsl: a fraction of E sparse learning, then the rest fine-tuning). ``--align 1`` (default) keeps
exact ratios on both sides.

Each row (method, arch, ratio, seed): top-1 of the written ONNX model in ORT on the 10k test images, the
dense model's, MACs and parameters of both by onnxprune's own counter (``count_costs`` at 1x1x28x28, the
one the report uses), and the wall time of prune + train (+ export; onnxprune: the whole ``compress``
call, model loading and verification included; evaluation excluded on both sides). Rows merge into
``--out`` (default benchmarks/results/peers.json) by key, so partial runs accumulate; the table (mean ±
sd over seeds per arch, method, ratio) is printed and the plots (top-1 vs MAC reduction, one curve per
method) go beside the JSON as ``peers_<arch>.png``.
"""

from __future__ import annotations

import argparse
import ast
import functools
import itertools
import logging
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from onnxprune.data import ArrayData, DataSplits, load_data, load_fashion_mnist
from onnxprune.extras import installed
from onnxprune.graph.macs import count_costs
from onnxprune.runtime.machine import environment
from onnxprune.runtime.sessions import make_session, top1

from . import common

ARCHS = ("vgg", "resnet", "mobilenetv2")
TP_METHODS = ("tp-oneshot", "tp-iterative", "tp-gsl")
ONNXPRUNE_METHODS = ("onnxprune-admm", "onnxprune-magnitude")
METHODS = (*TP_METHODS, *ONNXPRUNE_METHODS)
RATIOS = (0.5, 0.7, 0.85, 0.9)
INPUT_SHAPE = (1, 1, 28, 28)
# issue 20's acceptance: filter ratio -> margin over the best Torch-Pruning method (pp); wall time <= 1.5x
TARGET_MARGINS_PP, TARGET_WALL = {0.7: 0.5, 0.85: 1.5}, 1.5
BLOCK = "peers-results"
KEY = ("arch", "method", "variant", "ratio", "seed", "epochs", "max_samples", "reference")
# the references trained like real models (issue 20: SGD, cosine, crop + flip, 20 epochs)
REFERENCES = common.MODELS / "real"


def macs_params(path: Path) -> tuple[int, int]:
    cost = count_costs(onnx.load(str(path)), INPUT_SHAPE)
    return cost.total_macs, cost.params


@functools.cache
def test_set() -> ArrayData:
    return load_fashion_mnist()[1]


def test_top1(path: Path) -> float:
    """ORT top-1 on the 10k Fashion-MNIST test images."""
    test = test_set()
    assert test.y is not None
    return top1(make_session(path, threads=1), test.x, test.y)


dense_top1 = functools.cache(test_top1)  # the references do not change within a run


def splits(seed: int, max_samples: int | None) -> DataSplits:
    """The splits onnxprune's ``compress --data fashion-mnist --seed S --max-samples N`` trains on."""
    return load_data("fashion-mnist", ["batch", 1, 28, 28], seed=seed, max_samples=max_samples)


def train_options(args: argparse.Namespace, method: str) -> Any:
    """onnxprune's training options equal to the shared recipe (``--onnxprune-option`` overrides)."""
    from onnxprune import TrainOptions

    ft = args.finetune
    opts: dict[str, Any] = {
        "epochs": args.epochs,
        "optimizer": "sgd",
        "lr": args.admm_lr if args.admm_lr is not None else ft.lr,
        "finetune_lr": ft.lr,
        "lr_schedule": "warmup-cosine",
        "warmup": ft.warmup,
        "weight_decay": ft.weight_decay,
        "batch_size": ft.batch_size,
        "augment": ft.augment,
        "threads": args.threads,
        "device": args.device,
    }
    if method == "onnxprune-magnitude":
        opts |= {"admm_epochs": 0, "finetune_epochs": args.epochs}
    return TrainOptions(**(opts | args.onnxprune_options))


def run_onnxprune(
    method: str, dense: Path, out: Path, ratio: float, seed: int, args: argparse.Namespace
) -> tuple[float, dict[str, float]]:
    """``onnxprune.compress`` of ``dense`` to ``out``; returns its wall time and the report's seconds per
    phase (where the time goes: ADMM, retraining, export, verification...)."""
    import onnxprune

    start = time.perf_counter()
    result = onnxprune.compress(
        dense,
        f"filter:{ratio:g}",
        "fashion-mnist",
        out,
        method=method.removeprefix("onnxprune-"),
        train=train_options(args, method),
        align=args.align,
        seed=seed,
        max_samples=args.max_samples,
        bench_batches=(),
        quiet=True,
    )
    wall = time.perf_counter() - start
    return wall, {k: round(v, 2) for k, v in (result.report.phases or {}).items()}


def run_torch_pruning(
    method: str, arch: str, dense: Path, out: Path, ratio: float, seed: int, args: argparse.Namespace
) -> float:
    """A Torch-Pruning method on the module rebuilt from ``dense`` (checked against ORT), exported to
    ``out``; returns the wall time of prune + train + export."""
    import torch

    from . import peers_tp

    torch.set_num_threads(args.threads)
    data = splits(seed, args.max_samples)
    model = peers_tp.module_from_onnx(arch, dense)
    peers_tp.check_logits(model, dense, np.asarray(data.val.x)[:256])
    start = time.perf_counter()
    peers_tp.run_tp(method, model, data.train, ratio, args.epochs, seed, args.finetune, args.tp, args.device)
    peers_tp.export(model, out)
    return time.perf_counter() - start


def run_one(arch: str, method: str, ratio: float, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    dense = args.models_dir / f"fmnist_{arch}.onnx"
    if not dense.is_file():
        raise SystemExit(
            f"error: no {dense}: train it with python models/train_reference.py --arch {arch} "
            f"--out-dir {args.models_dir}"
        )
    out = args.work_dir / f"{arch}_{method}_r{ratio:g}_s{seed}_e{args.epochs:g}.onnx"
    out.unlink(missing_ok=True)
    phases: dict[str, float] = {}
    if method in TP_METHODS:
        wall = run_torch_pruning(method, arch, dense, out, ratio, seed, args)
    else:
        wall, phases = run_onnxprune(method, dense, out, ratio, seed, args)
    macs_dense, params_dense = macs_params(dense)
    macs, params = macs_params(out)
    row = {
        "arch": arch,
        "method": method,
        "ratio": ratio,
        "seed": seed,
        "epochs": args.epochs,
        "max_samples": args.max_samples,
        "reference": str(dense.relative_to(common.ROOT) if dense.is_relative_to(common.ROOT) else dense),
        "top1": test_top1(out),
        "dense_top1": dense_top1(dense),
        "macs_dense": macs_dense,
        "macs": macs,
        "mac_reduction": macs_dense / macs,
        "params_dense": params_dense,
        "params": params,
        "wall_s": wall,
        "threads": args.threads,
        "device": args.device,
        "recipe": vars(args.finetune) | {"admm_lr": args.admm_lr, "align": args.align},
        "date": time.strftime("%Y-%m-%d"),
    }
    if method in TP_METHODS:
        row |= {"tp": vars(args.tp), "variant": ""}
    else:
        opts = args.onnxprune_options
        row |= {"onnxprune_options": opts, "variant": variant(opts), "phases_s": phases}
    print(
        f"{arch} {method} filter:{ratio:g} seed {seed}: top-1 {100 * row['top1']:.2f}% "
        f"(dense {100 * row['dense_top1']:.2f}%), MACs /{row['mac_reduction']:.2f}, {wall:.1f} s",
        flush=True,
    )
    return row


def variant(options: dict[str, Any]) -> str:
    """The ``--onnxprune-option`` settings of a row, ``k=v,...`` ('' for the defaults)."""
    return ",".join(f"{k}={v}" for k, v in sorted(options.items()))


def label(row: dict[str, Any]) -> str:
    """The method as the table shows it: with its variant, if any (``onnxprune-admm [rho_max=10]``)."""
    return f"{row['method']} [{row['variant']}]" if row.get("variant") else row["method"]


def key(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row.get(k) for k in KEY)  # rows from before a key field existed lack it


def merge(path: Path, new: list[dict[str, Any]]) -> dict[str, Any]:
    """The rows of ``path`` with ``new`` replacing those of the same key; written back."""
    saved = common.read_json(path, {"runs": []})
    fresh = {key(r) for r in new}
    runs = [r for r in saved["runs"] if key(r) not in fresh] + new
    saved = {"environment": environment(), "runs": sorted(runs, key=lambda r: tuple(map(str, key(r))))}
    common.write_json(saved, path)
    return saved


# --------------------------------------------------------------------------------------------- summary


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(runs: list[dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Per (arch, epochs, max_samples, method, ratio): mean and sd of top-1, MAC reduction, wall time."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        groups[(r["arch"], r["epochs"], r["max_samples"], label(r), r["ratio"])].append(r)
    out = {}
    for k, rows in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
        out[k] = {
            "n": len(rows),
            "top1": mean_sd([100 * r["top1"] for r in rows]),
            "dense_top1": 100 * rows[0]["dense_top1"],
            "mac_reduction": mean_sd([r["mac_reduction"] for r in rows]),
            "params": statistics.fmean(r["params"] for r in rows),
            "wall_s": mean_sd([r["wall_s"] for r in rows]),
        }
    return out


def table(summary: dict[tuple[Any, ...], dict[str, Any]]) -> str:
    header = ["arch", "epochs", "samples", "method", "filter ratio", "seeds", "top-1 % (dense)"]
    header += ["MAC reduction", "params", "wall s"]
    body = []
    for (arch, epochs, samples, method, ratio), s in summary.items():
        body.append(
            [
                arch,
                f"{epochs:g}",
                samples or "all",
                method,
                f"{ratio:g}",
                s["n"],
                f"{s['top1'][0]:.2f} ± {s['top1'][1]:.2f} ({s['dense_top1']:.2f})",
                f"{s['mac_reduction'][0]:.2f}x",
                f"{s['params']:,.0f}",
                f"{s['wall_s'][0]:.0f} ± {s['wall_s'][1]:.0f}",
            ]
        )
    return common.markdown_table(header, body)


def verdicts(summary: dict[tuple[Any, ...], dict[str, Any]]) -> list[str]:
    """Issue 20's acceptance per (arch, epochs, samples) and target ratio: each onnxprune-admm row's mean
    top-1 >= the best Torch-Pruning method's + the margin, its wall time <= 1.5x that method's."""
    lines = []
    settings = sorted({k[:3] for k in summary}, key=lambda k: tuple(map(str, k)))
    for (arch, epochs, samples), (ratio, need) in itertools.product(settings, TARGET_MARGINS_PP.items()):
        peers = {m: summary.get((arch, epochs, samples, m, ratio)) for m in TP_METHODS}
        present = {m: s for m, s in peers.items() if s is not None}
        admm = sorted(
            {k[3] for k in summary if k[:3] == (arch, epochs, samples) and k[3].startswith("onnxprune-admm")}
        )
        for name in admm:
            ours = summary.get((arch, epochs, samples, name, ratio))
            if ours is None or not present:
                continue
            best = max(present, key=lambda m: present[m]["top1"][0])
            margin = ours["top1"][0] - present[best]["top1"][0]
            wall = ours["wall_s"][0] / present[best]["wall_s"][0]
            ok = margin >= need and wall <= TARGET_WALL
            lines.append(
                f"{arch}, {epochs:g} epochs, filter:{ratio:g}: {name} {margin:+.2f} pp vs {best}, "
                f"wall {wall:.2f}x: {'met' if ok else 'missed'} (target >= +{need} pp, <= {TARGET_WALL}x)"
            )
    return lines


PLOT_MIN_RATIOS = 3


def plot(runs: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """``peers_<arch>.png``: mean top-1 (± sd bars) vs mean MAC reduction, one curve per method run at
    :data:`PLOT_MIN_RATIOS` ratios or more (the runs of the largest epoch budget of each arch; smoke runs
    with other budgets are not mixed in; a variant tried at one or two ratios is in the table only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    written = []
    summary = summarize(runs)
    for arch in sorted({k[0] for k in summary}):
        epochs, samples = max((k[1], str(k[2])) for k in summary if k[0] == arch)
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        dense = None
        for method in sorted({k[3] for k in summary if k[0] == arch}):
            points = sorted(
                (s["mac_reduction"][0], s["top1"][0], s["top1"][1])
                for k, s in summary.items()
                if k[0] == arch and k[1] == epochs and str(k[2]) == samples and k[3] == method
            )
            if len(points) >= PLOT_MIN_RATIOS:
                x, y, sd = zip(*points, strict=True)
                ax.errorbar(x, y, yerr=sd, marker="o", capsize=3, label=method)
                dense = next(s["dense_top1"] for k, s in summary.items() if k[0] == arch)
        if dense is not None:
            ax.axhline(dense, color="grey", linestyle=":", label="dense")
        ax.set_xscale("log")  # ratios 0.5..0.9 give ~4x..~100x
        ticks = sorted({round(s["mac_reduction"][0], 1) for k, s in summary.items() if k[0] == arch})
        ax.set_xticks(ticks)  # the measured reductions: a log axis within one decade shows no labels
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xlabel("MAC reduction (dense / pruned MACs)")
        ax.set_ylabel("top-1 % (10k test, ORT)")
        ax.set_title(f"fmnist_{arch}, filter pruning, {epochs:g} epochs, samples {samples}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
        path = out_dir / f"peers_{arch}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def render(saved: dict[str, Any], out_dir: Path) -> str:
    summary = summarize(saved["runs"])
    text = table(summary)
    lines = verdicts(summary)
    if lines:
        text += "\n\n" + "\n".join(f"- {line}" for line in lines)
    for path in plot(saved["runs"], out_dir):
        print(f"wrote {path}")
    return text


# --------------------------------------------------------------------------------------------- driver


def option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` of ``--onnxprune-option`` (the value a Python literal, else a string)."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"want KEY=VALUE, not {text!r}")
    try:
        return name.replace("-", "_"), ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name.replace("-", "_"), value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from .peers_settings import Finetune, TpSettings

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", nargs="+", default=list(ARCHS), choices=ARCHS)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--ratios", nargs="+", type=float, default=list(RATIOS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=10, help="total epochs of every method (default 10)")
    ap.add_argument("--max-samples", type=int, help="first N training images (default: all 60k)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of every method (default 1)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="training device, both sides")
    ap.add_argument("--lr", type=float, default=Finetune.lr, help="peak lr of (re)training, SGD")
    ap.add_argument("--admm-lr", type=float, help="onnxprune-admm's ADMM-phase lr (default: --lr)")
    ap.add_argument("--weight-decay", type=float, default=Finetune.weight_decay)
    ap.add_argument("--batch-size", type=int, default=Finetune.batch_size)
    ap.add_argument("--augment", default=Finetune.augment, help="crop,flip (default) or '' for none")
    ap.add_argument("--warmup", type=float, default=Finetune.warmup, help="warm-up fraction of each phase")
    ap.add_argument("--align", type=int, default=1, help="kept filters a multiple of N, both sides")
    ap.add_argument("--iterative-steps", type=int, default=TpSettings.iterative_steps)
    ap.add_argument("--gsl-reg", type=float, default=TpSettings.gsl_reg)
    ap.add_argument("--gsl-fraction", type=float, default=TpSettings.gsl_fraction, help="of the steps")
    ap.add_argument(
        "--onnxprune-option",
        dest="onnxprune_options",
        type=option,
        action="append",
        default=[],
        help="KEY=VALUE of onnxprune's TrainOptions over the shared recipe (e.g. loss_guard=2)",
    )
    ap.add_argument(
        "--models-dir", type=Path, default=REFERENCES, help="the dense references (default: models/real)"
    )
    ap.add_argument("--out", type=Path, default=common.RESULTS / "peers.json")
    ap.add_argument("--work-dir", type=Path, default=common.OUT / "peers", help="the pruned models")
    ap.add_argument("--render-only", action="store_true", help="table and plots from --out")
    ap.add_argument("--readme", action="store_true", help="also put the table in benchmarks/README.md")
    args = ap.parse_args(argv)
    args.onnxprune_options = dict(args.onnxprune_options)
    args.finetune = Finetune(args.lr, args.weight_decay, args.batch_size, args.augment, args.warmup)
    args.tp = TpSettings(args.iterative_steps, args.gsl_reg, args.gsl_fraction, args.align)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.render_only:
        publish(render(common.read_json(args.out), args.out.parent), args.readme)
        return
    if any(m in TP_METHODS for m in args.methods) and not installed("torch_pruning"):
        raise SystemExit("run_peers: the tp-* methods need torch-pruning: pip install -e '.[peers]'")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    saved = common.read_json(args.out, {"runs": []})
    for arch in args.arch:
        for ratio in args.ratios:
            for seed in args.seeds:
                for method in args.methods:  # one row at a time: a killed run keeps what it finished
                    saved = merge(args.out, [run_one(arch, method, ratio, seed, args)])
    publish(render(saved, args.out.parent), args.readme)


def publish(text: str, readme: bool) -> None:
    print(text)
    if readme:
        common.splice(BLOCK, text, "Peers (Torch-Pruning)")


if __name__ == "__main__":
    main()
