"""Data-parallel fit under torch.distributed: a shard gets the paths its rows get in the whole batch, and
`torchrun --nproc-per-node 2` (gloo, 127.0.0.1) ends with the parameters of the 1-process run (float64).

The torchrun process group is started here in its own session, bounded, and killed by its PID in a ``finally``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from nsde_coin.brownian import FixedGridBrownian
from nsde_coin.fields import DiagonalDiffusion, MLPDrift
from nsde_coin.integrate import feynman_kac
from nsde_coin.model import ConvectionDiffusionNet
from nsde_coin.toydata import make_spirals
from nsde_coin.training import fit

N, DIM, BATCH, EPOCHS = 96, 4, 25, 2  # batches 25, 25, 25, 21: uneven shards (12/13, 10/11) on 2 ranks

SCRIPT = """
import os, sys
import torch
import torch.distributed as dist
sys.path.insert(0, {tests!r})
from test_train_distributed import train

if __name__ == "__main__":
    dist.init_process_group("gloo")
    model, res = train()
    if dist.get_rank() == 0:
        torch.save({{"params": dict(model.named_parameters()), "history": res.history, "ranks": res.ranks}},
                   sys.argv[1])
    dist.destroy_process_group()
"""


def train():
    """The run both sides make: a float64 SDE network on 96 spiral points, 2 epochs of 4 minibatches."""
    torch.set_num_threads(1)
    data = make_spirals(N, dim=DIM, classes=3, seed=0)
    torch.manual_seed(0)
    model = ConvectionDiffusionNet(nn.Linear(DIM, 3), MLPDrift(DIM, width=16, depth=2, time_dependent=True),
                                   DiagonalDiffusion(DIM, 0.4, learnable=True), T=1.0, steps=5,
                                   solver="euler", samples=4, seed=7).double()
    res = fit(model, data.x_train.double(), data.y_train, epochs=EPOCHS, batch_size=BATCH, lr=2e-2, seed=3)
    return model, res


def test_a_row_slice_of_the_brownian_motion_is_the_slice_of_the_whole_draw():
    full = FixedGridBrownian(0.0, 1.0, (10, 3), steps=4, seed=5, dtype=torch.float64, levy_area="space-time")
    part = FixedGridBrownian(0.0, 1.0, (10, 3), steps=4, seed=5, dtype=torch.float64, levy_area="space-time",
                             rows=(3, 7))
    assert part.shape == (4, 3)
    for ta, tb in ((0.0, 0.25), (0.25, 1.0)):
        (w, u), (wp, up) = full(ta, tb, return_U=True), part(ta, tb, return_U=True)
        assert torch.equal(w[3:7], wp) and torch.equal(u[3:7], up)  # the same draws, sliced: bit for bit
    with pytest.raises(ValueError, match="rows=.*not valid"):
        FixedGridBrownian(0.0, 1.0, (10, 3), steps=4, rows=(5, 11))


def test_a_shard_of_the_batch_gets_the_paths_of_its_rows():
    torch.manual_seed(0)
    x = torch.randn(9, DIM, dtype=torch.float64)
    base, drift = nn.Linear(DIM, 3).double(), MLPDrift(DIM, width=8, depth=2).double()
    diff = DiagonalDiffusion(DIM, torch.full((DIM,), 0.5, dtype=torch.float64))
    f = lambda z: base(z).softmax(-1)  # noqa: E731
    whole, _ = feynman_kac(f, x, drift, diff, samples=6, steps=4, seed=11)
    top, _ = feynman_kac(f, x[:4], drift, diff, samples=6, steps=4, seed=11, batch_rows=(0, 9))
    rest, _ = feynman_kac(f, x[4:], drift, diff, samples=6, steps=4, seed=11, batch_rows=(4, 9))
    # row-wise maps of the same inputs and noise: equal up to the rounding of batched matmuls (~1e-16 measured)
    assert torch.allclose(torch.cat([top, rest]), whole, rtol=0, atol=1e-13)
    alone, _ = feynman_kac(f, x[4:], drift, diff, samples=6, steps=4, seed=11)  # without batch_rows: other paths
    assert (alone - whole[4:]).abs().max() > 1e-3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args: list[str]) -> None:
    """``torchrun --nproc-per-node 2`` on 127.0.0.1 (gloo over loopback), bounded; its process group is killed by
    the leader's PID if it overruns or the test fails."""
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--nnodes", "1",
           "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), *args]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the group torchrun leads: its two ranks
            proc.wait(timeout=30)
    assert proc.returncode == 0, log.decode()[-3000:]


@pytest.mark.slow
def test_torchrun_two_ranks_end_with_the_parameters_of_one_process(tmp_path):
    script = tmp_path / "ddp_fit.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).resolve().parent)))
    out = tmp_path / "two.pt"
    _torchrun([str(script), str(out)])
    two = torch.load(out, weights_only=False)
    model, one = train()
    assert two["ranks"] == 2 and one.ranks == 1
    # 8 Adam steps; only the summation order of the loss and gradient differs (sum of two shard sums vs one mean):
    # measured max |difference| 1.7e-16; 1e-9 leaves six orders of margin and is far below what other paths give
    # (each shard solved with its own paths, i.e. without batch_rows: measured 0.13)
    for name, p in model.named_parameters():
        assert torch.allclose(two["params"][name], p.detach(), rtol=0, atol=1e-9), name
    for a, b in zip(two["history"], one.history):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-12) and a["train_acc"] == b["train_acc"]


@pytest.mark.slow
def test_nsde_coin_train_under_torchrun_reports_the_one_process_results(tmp_path):
    from nsde_coin.cli import main

    args = ["train", "--points", "300", "--epochs", "3", "--steps", "5", "--samples", "4", "--eval-samples", "8",
            "--models", "sde", "--no-plot", "--batch-size", "50", "--json"]
    _torchrun(["-m", "nsde_coin.cli", *args, "--out", str(tmp_path / "two")])
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    one, two = (json.loads((tmp_path / d / "train.json").read_text()) for d in ("one", "two"))
    assert two["environment"]["ranks"] == 2 and one["environment"]["ranks"] == 1
    a, b = one["models"][0], two["models"][0]
    # float32: the 2-rank loss differs from the 1-rank loss in the 8th digit (summation order; measured 1.3e-8
    # relative); the evaluation of the equal-to-~1e-7 weights gives the same accuracy and NLL to 1e-5
    assert b["test_accuracy"] == a["test_accuracy"] and b["test_nll"] == pytest.approx(a["test_nll"], rel=1e-5)
    for ra, rb in zip(a["history"], b["history"]):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-5) and rb["train_acc"] == ra["train_acc"]
