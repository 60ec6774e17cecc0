"""Micro-benchmark of COIN's graph propagation and of a full COIN training epoch on a Cora-sized problem.

Part 1 — 20 explicit steps u ← u − σ²Lu (σ² = 0.35, u: n × 7) forward + backward, paper Laplacian of Cora's largest
connected component (2485 nodes; a random graph of the same size and edge count when ../shared/data is absent):

* ``nsde_coin``   — ``diffuse(..., solver="explicit")``: CSR of P = I − σ²L, one custom autograd call (backward = the
                    same propagation, L symmetric); its k steps run in one compiled call
                    (:func:`nsde_coin.graph.native.csr_power`) where the library was built;
* ``nsde_coin_torch`` — the same with ``NSDE_COIN_NATIVE=0``: k torch CSR products per direction;
* ``dense``       — autograd through a dense n×n L;
* ``torch_coo``   — autograd through ``torch.sparse.mm`` with a COO L (a plain sparse implementation);
* ``csr_forward`` — 20 CSR products, forward only (a lower bound).

Part 2 — one COIN training epoch (forward + backward + Adam step; lr 0.01, wd 5e-4), Cora-sized random sparse features
(2485 × 1433, ~18 non-zeros per row, row-normalised), 7 classes, 140 training nodes: ``COIN`` (sparse CSR features),
``COIN`` with dense features, the base alone (layer_num 0), and ``COINEnsemble`` of I members vs I single models.

Times are medians over repeats after a warm-up, with ``torch.set_num_threads(--threads)`` (default 1). Ratios are
against baselines measured in the same run. Usage::

    python benchmarks/bench_propagate.py [--threads 1] [--repeats 30] [--ensemble 4] [--out results.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from _report import emit_json, out_file

from nsde_coin.graph import native
from nsde_coin.graph.coin import COIN, COINEnsemble, node_nll_loss
from nsde_coin.graph.diffusion import diffuse
from nsde_coin.graph.laplacian import laplacian_from_weights, torch_csr
from nsde_coin.machine import cpu_model

warnings.filterwarnings("ignore", category=UserWarning)


def cora_adjacency() -> tuple[sp.csr_matrix, str]:
    root = Path(os.environ.get("NSDE_COIN_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
    path = root / "npz" / "cora.npz"
    if path.exists():
        from scipy.sparse.csgraph import connected_components

        z = np.load(path)
        a = sp.csr_matrix((z["adj_data"], z["adj_indices"], z["adj_indptr"]), shape=tuple(z["adj_shape"]))
        a = ((a + a.T) > 0).astype(np.float64)
        _, comp = connected_components(a, directed=False)
        keep = comp == np.bincount(comp).argmax()
        return sp.csr_matrix(a[keep][:, keep]), "cora_lcc"
    rng = np.random.default_rng(0)
    n, e = 2485, 5069
    rows, cols = rng.integers(0, n, e), rng.integers(0, n, e)
    a = sp.csr_matrix((np.ones(e), (rows, cols)), shape=(n, n))
    return sp.csr_matrix(((a + a.T) > 0).astype(np.float64)), "random_2485"


def timed(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def bench_propagation(a: sp.csr_matrix, repeats: int, steps: int = 20, s: float = 0.35) -> dict:
    op = laplacian_from_weights(a, "paper", operator=True)
    n = op.n
    g = torch.Generator().manual_seed(0)
    u0 = torch.softmax(torch.randn(n, 7, generator=g), 1)
    w = torch.randn(n, 7, generator=g)
    dense = op.csr().to_dense()
    coo = op.csr().to_sparse_coo()
    csr_p = op.step_matrix(s)

    def ours():
        u = u0.clone().requires_grad_(True)
        (diffuse(u, op, s, steps, allow_unstable=True) * w).sum().backward()

    def loop(matmul):
        def run():
            u = u0.clone().requires_grad_(True)
            v = u
            for _ in range(steps):
                v = v - s * matmul(v)
            (v * w).sum().backward()
        return run

    def csr_forward():
        v = u0
        for _ in range(steps):
            v = csr_p @ v

    # correctness check before timing: both ways give the same gradient
    u = u0.clone().requires_grad_(True)
    (diffuse(u, op, s, steps, allow_unstable=True) * w).sum().backward()
    u2 = u0.clone().requires_grad_(True)
    v = u2
    for _ in range(steps):
        v = v - s * torch.sparse.mm(coo, v)
    (v * w).sum().backward()
    grad_err = float((u.grad - u2.grad).abs().max() / u2.grad.abs().max())

    res = {"n": n, "nnz": int(op.scipy.nnz), "steps": steps, "sigma2": s, "lambda_max": op.lambda_max,
           "grad_rel_diff_vs_coo": grad_err}
    res["nsde_coin_fwd_bwd_ms"] = timed(ours, repeats)
    res["compiled_power"] = native.status()
    before = os.environ.get(native.ENV)
    os.environ[native.ENV] = "0"
    try:
        res["nsde_coin_torch_fwd_bwd_ms"] = timed(ours, repeats)
    finally:
        if before is None:
            os.environ.pop(native.ENV)
        else:
            os.environ[native.ENV] = before
    res["speedup_compiled_vs_torch_path"] = res["nsde_coin_torch_fwd_bwd_ms"] / res["nsde_coin_fwd_bwd_ms"]
    res["dense_fwd_bwd_ms"] = timed(loop(lambda v: dense @ v), max(3, repeats // 5))
    res["torch_coo_fwd_bwd_ms"] = timed(loop(lambda v: torch.sparse.mm(coo, v)), max(5, repeats // 3))
    res["csr_forward_only_ms"] = timed(csr_forward, repeats)
    res["speedup_vs_dense"] = res["dense_fwd_bwd_ms"] / res["nsde_coin_fwd_bwd_ms"]
    res["speedup_vs_torch_coo"] = res["torch_coo_fwd_bwd_ms"] / res["nsde_coin_fwd_bwd_ms"]
    return res


def sparse_features(n: int, d: int = 1433, per_row: int = 18, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    cols = np.concatenate([rng.choice(d, per_row, replace=False) for _ in range(n)])
    rows = np.repeat(np.arange(n), per_row)
    x = sp.csr_matrix((np.full(n * per_row, 1.0 / per_row), (rows, cols)), shape=(n, d))
    return x


def bench_epochs(a: sp.csr_matrix, repeats: int, ensemble: int) -> dict:
    op = laplacian_from_weights(a, "paper", operator=True)
    n = op.n
    xs = sparse_features(n)
    x = torch_csr(xs)
    xd = x.to_dense()
    y = torch.randint(0, 7, (n,), generator=torch.Generator().manual_seed(1))
    idx = torch.arange(140)

    def epoch_fn(model, feats, ens=False):
        opt = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)

        def run():
            opt.zero_grad()
            loss = node_nll_loss(model.log_prob(feats), y, idx)
            (loss.sum() if ens else loss).backward()
            opt.step()
        return run

    def coin(layer_num=20, seed=0):
        m = COIN(1433, 7, layer_num=layer_num, sigma2=0.35, allow_unstable=True,
                 generator=torch.Generator().manual_seed(seed))
        m.set_graph(op)
        return m

    res = {"features": "random sparse 2485x1433, 18 nnz/row", "classes": 7}
    res["coin_epoch_ms"] = timed(epoch_fn(coin(), x), repeats)
    res["coin_dense_features_epoch_ms"] = timed(epoch_fn(coin(), xd), max(5, repeats // 3))
    res["base_only_epoch_ms"] = timed(epoch_fn(coin(layer_num=0), x), repeats)
    res["propagation_share"] = 1 - res["base_only_epoch_ms"] / res["coin_epoch_ms"]
    res["sparse_vs_dense_features_speedup"] = res["coin_dense_features_epoch_ms"] / res["coin_epoch_ms"]
    if ensemble > 1:
        ens = COINEnsemble.from_models([coin(seed=i) for i in range(ensemble)])
        ens.set_graph(op)
        t_ens = timed(epoch_fn(ens, x, ens=True), max(5, repeats // 2))
        singles = [epoch_fn(coin(seed=i), x) for i in range(ensemble)]
        t_single = timed(lambda: [f() for f in singles], max(5, repeats // 2))
        res.update({"ensemble_members": ensemble, "ensemble_epoch_ms": t_ens, "singles_epoch_ms": t_single,
                    "ensemble_speedup": t_single / t_ens})
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--ensemble", type=int, default=4)
    p.add_argument("--skip-epochs", action="store_true", help="only the propagation micro-benchmark")
    p.add_argument("--out", type=out_file, default=None, help="write the JSON here as well as to stdout")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    a, graph = cora_adjacency()
    out = {"graph": graph, "threads": args.threads, "torch": torch.__version__, "python": sys.version.split()[0],
           "cpu": cpu_model(), "propagation": bench_propagation(a, args.repeats)}
    if not args.skip_epochs:
        out["epoch"] = bench_epochs(a, args.repeats, args.ensemble)
    emit_json(out, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
