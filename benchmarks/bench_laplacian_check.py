"""What the "is L a Laplacian?" check of ``diffuse`` costs: once per graph, and per COIN training epoch.

Graph: the paper Laplacian of Cora's largest connected component (2485 nodes; a random graph of the same size when
../shared/data is absent), as in ``bench_propagate.py``. Measured in the same run:

* ``check_once_ms`` — :func:`~nsde_coin.graph.laplacian_checks.laplacian_problem` on a fresh operator (the one-time
  cost a training run pays on its first epoch); ``check_cached_us`` — every later call (a dict lookup);
* ``epoch_checked_ms`` / ``epoch_unchecked_ms`` — one COIN epoch (forward + backward + Adam step, 20 explicit steps,
  σ² = 0.35) with the default ``check_laplacian=True`` and with ``check_laplacian=False``; the two are
  timed epoch by epoch in alternation so that machine load affects both alike. ``epoch_ratio`` = checked /
  unchecked (1.0 = free).

Usage::

    python benchmarks/bench_laplacian_check.py [--threads 1] [--repeats 30] [--out benchmarks/results/x.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import emit_json, out_file  # noqa: E402
from bench_propagate import cora_adjacency, sparse_features  # noqa: E402

from nsde_coin.graph.coin import COIN, node_nll_loss  # noqa: E402
from nsde_coin.graph.laplacian import laplacian_from_weights, torch_csr  # noqa: E402
from nsde_coin.graph.laplacian_checks import laplacian_problem  # noqa: E402
from nsde_coin.machine import cpu_model  # noqa: E402

warnings.filterwarnings("ignore", category=UserWarning)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--out", type=out_file, default=None, help="write the JSON here as well as to stdout")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    a, graph = cora_adjacency()

    once = []
    for _ in range(args.repeats):
        op = laplacian_from_weights(a, "paper", operator=True)
        t0 = time.perf_counter()
        assert laplacian_problem(op) is None
        once.append(time.perf_counter() - t0)

    op = laplacian_from_weights(a, "paper", operator=True)
    laplacian_problem(op)
    t0 = time.perf_counter()
    for _ in range(10_000):
        laplacian_problem(op)
    cached_us = (time.perf_counter() - t0) / 10_000 * 1e6
    n = op.n
    x = torch_csr(sparse_features(n))
    y = torch.randint(0, 7, (n,), generator=torch.Generator().manual_seed(1))
    idx = torch.arange(140)

    def epoch(check: bool):
        m = COIN(1433, 7, layer_num=20, sigma2=0.35, allow_unstable=True, generator=torch.Generator().manual_seed(0),
                 solver_options={"check_laplacian": check})
        m.set_graph(op)
        opt = torch.optim.Adam(m.parameters(), lr=0.01, weight_decay=5e-4)

        def run():
            opt.zero_grad()
            node_nll_loss(m.log_prob(x), y, idx).backward()
            opt.step()
        return run

    checked, unchecked = epoch(True), epoch(False)
    for _ in range(3):  # warm-up
        checked(), unchecked()
    t_on, t_off = [], []
    for i in range(args.repeats):  # epoch by epoch, alternating which goes first: load hits both alike
        for fn, acc in ((checked, t_on), (unchecked, t_off))[:: 1 if i % 2 else -1]:
            t0 = time.perf_counter()
            fn()
            acc.append((time.perf_counter() - t0) * 1e3)
    on, off = statistics.median(t_on), statistics.median(t_off)
    out = {"graph": graph, "n": n, "nnz": int(op.scipy.nnz), "threads": args.threads, "torch": torch.__version__,
           "python": sys.version.split()[0], "cpu": cpu_model(),
           "check_once_ms": statistics.median(once) * 1e3, "check_cached_us": cached_us,
           "epoch_checked_ms": on, "epoch_unchecked_ms": off,
           "epoch_ratio": on / off}
    emit_json(out, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
