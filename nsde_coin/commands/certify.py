"""Certified robustness: randomized smoothing of SDE networks (``sde``), exact k-node certificates of COIN (``graph``).

Examples::

    nsde-coin certify sde --dataset spirals --scale 0.25 --n 2000 --out benchmarks/results/certify_sde_spirals.json
    nsde-coin certify graph --dataset cora --solvers explicit implicit exact --k-max 10 \\
        --out benchmarks/results/certify_graph_cora.json

Prints a table of certified accuracy (or the JSON record with ``--json``); ``--out FILE.json`` writes the record and
the curves as ``FILE.png`` next to it (unless ``--no-plot``). See docs/certify.md for the mathematics.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from nsde_coin.commands.common import (
    add_common_arguments,
    add_deprecated_alias,
    emit,
    environment,
    format_table,
    set_threads,
    small_mode,
)


def add_parser(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="target", metavar="TARGET", required=True)
    fmt = p.formatter_class
    s = sub.add_parser("sde", help=_SDE_HELP, description=_SDE_HELP.capitalize() + ".", formatter_class=fmt)
    s.add_argument("--dataset", default="spirals",
                   help="spirals (embedded, 12-D) or digits (scikit-learn, [0, 1]) (default spirals)")
    s.add_argument("--scale", type=float, default=0.25, help="smoothing scale s = σ0·√t0 (default 0.25)")
    s.add_argument("--n0", type=int, default=100, help="paths that choose the class (default 100)")
    s.add_argument("--n", type=int, default=None, help="paths that bound p_A (default 2000; small mode 300)")
    s.add_argument("--alpha", type=float, default=0.001,
                   help="failure probability per certificate (default 0.001)")
    s.add_argument("--points", type=int, default=None, help="test inputs certified (default 300; small mode 40)")
    s.add_argument("--epochs", type=int, default=None, help="epoch budget: training epochs (default 20; small mode 2)")
    s.add_argument("--batch", type=int, default=20_000, help="network rows per call (default 20000)")
    s.add_argument("--seed", type=int, default=0, help="seed of data, training and paths (default 0)")
    g = sub.add_parser("graph", help=_GRAPH_HELP, description=_GRAPH_HELP.capitalize() + ".", formatter_class=fmt)
    g.add_argument("--dataset", default="cora", help="cora, citeseer or pubmed (default cora)")
    g.add_argument("--solvers", nargs="+", default=["explicit", "implicit", "exact"],
                   help="COIN solvers to train and certify (same diffusion time; default: all three, explicit "
                        "implicit exact)")
    g.add_argument("--layer-num", type=int, default=None, help="diffusion steps (default: paper / grid setting)")
    g.add_argument("--sigma2", type=float, default=None, help="diffusion step σ² (default: paper / grid setting)")
    g.add_argument("--k-max", type=int, default=10, help="largest k certified (default 10)")
    g.add_argument("--split", type=int, default=0, help="random split seed (default 0)")
    g.add_argument("--init", type=int, default=0, help="initialisation seed (default 0)")
    g.add_argument("--epochs", type=int, default=None,
                   help="epoch budget: a maximum, as early stopping usually ends training sooner (default 10000; "
                        "small mode 30)")
    add_deprecated_alias(g, "--max-epochs", "--epochs")
    g.add_argument("--max-nodes", type=int, default=None, help="certify at most this many test nodes (default all)")
    g.add_argument("--root", default=None, help="offline data folder (default $NSDE_COIN_DATA or ../shared/data)")
    for q in (s, g):
        add_common_arguments(q, figure="the certified-accuracy curve")
        q.add_argument("--no-plot", action="store_true", help="do not write the PNG next to --out")


_SDE_HELP = "certified L2 radius: SDE / ODE network with a prefix vs Gaussian augmentation"
_GRAPH_HELP = "certified accuracy vs k changed nodes for COIN on a citation graph"


def _pct(v: float) -> str:
    return f"{100 * v:.1f}"


def _sde_table(r: dict[str, Any]) -> str:
    header = ["model", "MC acc"] + [f"R≥{x:g}" for x in r["radii"]] + ["abstain"]
    rows = []
    for name, m in r["models"].items():
        rows.append([name, _pct(m["mc_accuracy_64_paths"])] + [_pct(v) for v in m["certified_accuracy"].values()]
                    + [_pct(m["abstain"])])
        rows.append([name + " (soft)", ""] + [_pct(v) for v in m["soft_certified_accuracy"].values()] + [""])
    return (f"{r['dataset']}: s = {r['scale']:g}, n0 = {r['n0']}, n = {r['n']}, alpha = {r['alpha']:g}, "
            f"{r['points']} test points (largest certifiable radius {r['max_radius']:.3f})\n"
            + format_table(header, rows))


def _graph_table(r: dict[str, Any]) -> str:
    ks = [k for k in (0, 1, 2, 3, 5, 10) if k <= r["k_max"]]
    header = ["model", "attacker", "test acc"] + [f"k={k}" for k in ks]
    rows, notes = [], []
    for name, m in r["models"].items():
        if "refused" in m:
            rows.append([name, "refused (*)", _pct(m["test_acc"])] + ["-"] * len(ks))
            notes.append(f"(*) {name}: {m['refused']}")
            continue
        for who in ("any", "others"):
            acc = m[f"certified_accuracy_{who}"]
            rows.append([name, "any k nodes" if who == "any" else "others only", _pct(m["test_acc"])]
                        + [_pct(acc[k]) for k in ks])
    return (f"{r['dataset']}: layer_num = {r['layer_num']}, sigma2 = {r['sigma2']:g}, {r['test_nodes']} test nodes, "
            f"split {r['split']}\n" + format_table(header, rows) + "".join("\n" + t for t in notes))


def plot(r: dict[str, Any], path: Path) -> None:
    """Certified-accuracy curves of a record (vs radius for ``sde``, vs k for ``graph``) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    if "scale" in r:
        for name, m in r["models"].items():
            line = ax.plot(m["curve"]["radius"], m["curve"]["hard"], label=f"{name} (vote)")[0]
            ax.plot(m["curve"]["radius"], m["curve"]["soft"], ls="--", color=line.get_color(), label=f"{name} (soft)")
        ax.set_xlabel("L2 radius")
        ax.set_title(f"{r['dataset']}: certified accuracy, s = {r['scale']:g}")
    else:
        for name, m in r["models"].items():
            if "refused" in m:
                continue
            color = None
            for who, ls in (("any", "-"), ("others", ":")):
                acc = m[f"certified_accuracy_{who}"]
                line = ax.plot(range(len(acc)), acc, ls=ls, marker=".", color=color,
                               label=f"{name}, attacker: {'any nodes' if who == 'any' else 'not node i'}")[0]
                color = line.get_color()
        ax.set_xlabel("k (nodes whose features the attacker may change)")
        ax.set_title(f"{r['dataset']}: COIN certified accuracy (T = {r['diffusion_time']:g})")
    ax.set_ylabel("certified accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    from nsde_coin.certify import experiments as ex

    set_threads(args.threads)
    small = small_mode()
    t0 = time.perf_counter()
    if args.target == "sde":
        n = args.n if args.n is not None else (300 if small else 2000)
        points = args.points if args.points is not None else (40 if small else 300)
        epochs = args.epochs if args.epochs is not None else (2 if small else 20)
        if args.dataset not in ex.SDE_DATASETS:
            from nsde_coin.errors import invalid_choice

            raise ValueError(invalid_choice("--dataset", args.dataset, ex.SDE_DATASETS))
        if not args.scale > 0:
            raise ValueError(f"--scale={args.scale} is not valid; expected a float > 0")
        r = ex.sde_experiment(args.dataset, args.scale, n0=args.n0, n=n, alpha=args.alpha, points=points,
                              epochs=epochs, seed=args.seed, batch=args.batch, small=small,
                              progress=not args.no_progress)
        table = _sde_table(r)
    else:
        max_epochs = args.epochs if args.epochs is not None else (30 if small else 10_000)
        r = ex.graph_experiment(args.dataset, solvers=tuple(args.solvers), layer_num=args.layer_num,
                                sigma2=args.sigma2, k_max=args.k_max, split=args.split, init=args.init,
                                max_epochs=max_epochs, root=args.root, max_nodes=args.max_nodes,
                                progress=not args.no_progress)
        table = _graph_table(r)
    r["environment"] = environment(time.perf_counter() - t0)
    r["small"] = small
    if args.out is not None and not args.no_plot:
        plot(r, Path(args.out).with_suffix(".png"))
    emit(r, table, args)
    return 0
