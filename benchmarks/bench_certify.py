"""Certified-robustness benchmark: runs ``nsde-coin certify`` for every configuration and writes the tables.

Configurations (each one CLI call; results ``benchmarks/results/certify_*.json`` + ``.png``):

* ``sde`` — embedded spirals and scikit-learn digits, smoothing scale s ∈ {0.25, 0.5}: SDE network with a
  pure-diffusion prefix, the same network without diffusion after the prefix (``ode``) and Cohen et al.'s
  Gaussian-augmentation MLP (``gaussian_aug``); n0 = 100, n = 2000, α = 0.001, 300 test points.
* ``graph`` — Cora (paper setting layer_num 20, σ² 0.35), CiteSeer (grid: 10, 0.3), PubMed (grid: 10, 0.1; a seeded
  random subset of 3000 test nodes), split 0, solvers explicit / implicit / exact and the layer_num = 0 ablation,
  k = 0..10, attacker with and without node i itself.

Usage::

    python benchmarks/bench_certify.py                 # run everything missing, then write certify.md
    python benchmarks/bench_certify.py --report-only   # only rebuild benchmarks/results/certify.md from the JSON
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from _report import write_text

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SDE = [(ds, s) for ds in ("spirals", "digits") for s in ("0.25", "0.5")]
GRAPH = {"cora": [], "citeseer": [], "pubmed": ["--max-nodes", "3000"]}


def _run(cmd: list[str], out: Path) -> None:
    if out.exists():
        print(f"have {out.name}")
        return
    print("run:", " ".join(cmd), flush=True)
    subprocess.run([sys.executable, "-m", "nsde_coin.cli", *cmd, "--out", str(out), "--no-progress", "--threads", "1"],
                   check=True)


def report() -> str:
    lines = ["## SDE networks: certified accuracy (%) at L2 radius r", "",
             "| data | s | model | MC acc | r = 0 | 0.25 | 0.5 | 0.75 | 1 | abstain | soft r = 0 | soft 0.25 "
             "| soft 0.5 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for ds, s in SDE:
        f = RESULTS / f"certify_sde_{ds}_s{s}.json"
        if not f.exists():
            continue
        r = json.loads(f.read_text())
        for name, m in r["models"].items():
            hard, soft = list(m["certified_accuracy"].values()), list(m["soft_certified_accuracy"].values())
            lines.append(f"| {ds} | {s} | {name} | {100 * m['mc_accuracy_64_paths']:.1f} | "
                         + " | ".join(f"{100 * v:.1f}" for v in hard) + f" | {100 * m['abstain']:.1f} | "
                         + " | ".join(f"{100 * v:.1f}" for v in soft[:3]) + " |")
    lines += ["", "## COIN: certified accuracy (%) against k changed nodes (test nodes, split 0)", "",
              "| graph | model | attacker | test acc | k = 0 | 1 | 2 | 3 | 5 | 10 |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for ds in GRAPH:
        f = RESULTS / f"certify_graph_{ds}.json"
        if not f.exists():
            continue
        r = json.loads(f.read_text())
        for name, m in r["models"].items():
            label = name if name.startswith("layer") else f"{name} (T = {r['diffusion_time']:g})"
            if "refused" in m:
                lines.append(f"| {ds} | {label} | refused: σ²·max L_ii = {m['sigma2_max_diag']:.2f} > 1 | "
                             f"{100 * m['test_acc']:.1f} | – | – | – | – | – | – |")
                continue
            for who in ("any", "others"):
                acc = m[f"certified_accuracy_{who}"]
                cells = " | ".join(f"{100 * acc[k]:.1f}" for k in (0, 1, 2, 3, 5, 10))
                lines.append(f"| {ds} | {label} | {'any k nodes' if who == 'any' else 'other nodes only'} | "
                             f"{100 * m['test_acc']:.1f} | {cells} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    if not args.report_only:
        for ds, s in SDE:
            _run(["certify", "sde", "--dataset", ds, "--scale", s], RESULTS / f"certify_sde_{ds}_s{s}.json")
        for ds, extra in GRAPH.items():
            _run(["certify", "graph", "--dataset", ds, "--k-max", "10", *extra], RESULTS / f"certify_graph_{ds}.json")
    text = report()
    write_text(RESULTS / "certify.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
