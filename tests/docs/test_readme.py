"""Every Python block of README.md runs as written (in a temporary folder), with checks on what it computes.

The GCN + GraphDiffusion block is executed, with its accuracy assertion, by tests/graph/test_graph_layers.py;
blocks that load a real data set skip when ../shared/data is absent.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from nsde_coin.graph import datasets as ds

pytestmark = [pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta state"),
              pytest.mark.filterwarnings("ignore::nsde_coin.graph.diffusion.PositivityWarning")]

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
HAVE_DATA = ds.default_data_root() is not None and Path(ds.default_data_root()).is_dir()


def _block(marker: str) -> str:
    found = [b for b in BLOCKS if marker in b]
    assert len(found) == 1, f"README.md must hold exactly one Python block containing {marker!r}"
    return found[0]


def _run(code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.chdir(tmp_path)  # a block that writes files (runs.jsonl) writes them here
    scope: dict = {"__name__": "readme"}
    exec(compile(code, "README.md", "exec"), scope)
    return scope


def test_every_python_block_is_covered():
    markers = ("ConvectionDiffusionNet(torch.nn.Linear", "laplacian(edge_index, num_nodes", "class GCNDiffusion",
               "run_protocol(\"cora\"")
    assert len(BLOCKS) == len(markers), "a new README block needs a test here"
    for m in markers:
        _block(m)


def test_core_block(tmp_path, monkeypatch):
    torch.manual_seed(0)
    s = _run(_block("ConvectionDiffusionNet(torch.nn.Linear"), tmp_path, monkeypatch)
    # probabilities: rows of the Monte Carlo mean of softmax outputs sum to 1 (float32 round-off ~1e-7)
    assert torch.allclose(s["probs"].sum(1), torch.ones(32), atol=1e-5)
    assert math.isfinite(float(s["loss"].detach()))
    # E[sin(2 X_T)] estimated from 1000 paths: |mean| <= 1 and its standard error of order 1/sqrt(1000)
    assert s["mean"].shape == (32, 16) and float(s["mean"].abs().max()) <= 1.0
    assert 0.0 < float(s["stderr"].max()) < 0.05


def test_graph_solvers_block(tmp_path, monkeypatch):
    torch.manual_seed(0)
    s = _run(_block("laplacian(edge_index, num_nodes"), tmp_path, monkeypatch)
    # the paper's L has zero row sums, so diffusion keeps each node's probabilities summing to 1
    assert torch.allclose(s["u"].sum(1), torch.ones(6), atol=1e-5)
    # the random-walk estimate of the exact solve agrees within 5 standard errors (2000 walks per node)
    exact = s["diffuse"](s["u0"], s["L"], 0.1, 20, solver="exact")
    assert bool(((s["mean"] - exact).abs() <= 5 * s["stderr"] + 1e-6).all())
    assert math.isfinite(float(s["loss"].detach()))


@pytest.mark.skipif(not HAVE_DATA, reason="shared data folder (<repo>/../shared/data or $NSDE_COIN_DATA) is absent")
def test_protocol_block(tmp_path, monkeypatch):
    s = _run(_block("run_protocol(\"cora\""), tmp_path, monkeypatch)
    # COIN on Cora in the paper's setting: 82.3 ± 1.0 % over the full protocol; two runs stay within 70-90 %
    assert 70.0 < s["summary"]["test_acc_mean"] < 90.0  # percent
    assert (tmp_path / "runs.jsonl").is_file()
