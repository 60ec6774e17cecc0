"""The AVX-512 build's pipelined forward (csrc/pipelined.h: a node's output-layer dots inside the next node's gather)
against the plain loop, bit for bit: the library is built a second time here with ``-DNSDE_NO_PIPELINE`` (the same
flags otherwise) and both run the same problems: 64- and 128-column panels (the EPYC's and the Xeon's Cora widths),
a narrow last panel, 1, 7 and 8 classes (and 9, which both run the plain loop), rows of 0-5 and 40+ features, kept and
recomputed activations, 1 and 3 threads, and the backward (with Adam) from what each forward kept."""

from __future__ import annotations

import pytest
import torch
from compiled import NATIVE_ONLY, build_library
from problems import ragged_rows

from nsde_coin.graph import native
from nsde_coin.graph.backward_adam import BackwardAdam
from nsde_coin.graph.sparse_base import sparse_features

pytestmark = NATIVE_ONLY


@pytest.fixture(scope="module")
def plain_build(tmp_path_factory):
    """The kernel library without the pipelined forward (the same flags otherwise), on the AVX-512 path only."""
    if native.isa() != "avx512":
        pytest.skip(f"the pipelined forward is AVX-512 code; this run uses the {native.isa()} build")
    return build_library(tmp_path_factory.mktemp("plain") / "kernel_plain.so", "-DNSDE_NO_PIPELINE")


def _problem(n: int, d: int, c: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = ragged_rows(n, d, g).float().to_sparse_csr()
    w1 = torch.randn(d, d, generator=g) * 0.05
    b1, w2, b2 = torch.randn(d, generator=g) * 0.1, torch.randn(c, d, generator=g) * 0.05, torch.randn(c, generator=g)
    return sparse_features(x), w1, b1, w2, b2, torch.randn(n, c, generator=g)


def _epoch(feats, w1, b1, w2, b2, g, panel, keep, threads):
    n, c, d = g.shape[0], g.shape[1], w1.shape[0]
    w1 = w1.clone()
    out, h = torch.empty(n, c), torch.empty(n * d) if keep else None
    native.forward(feats, w1, b1, w2, out, panel, h, threads, b2)
    step = BackwardAdam(lr=0.05, weight_decay=0.01)
    hy = step.begin(w1, panel)
    gb1, gw2, gb2 = torch.empty(d), torch.empty(c, d), torch.empty(c)
    native.backward(feats, g, h if keep else (w1.clone(), b1), w2, None, gb1, gw2, panel,
                    (w1, step.exp_avg, step.exp_avg_sq, hy), False, threads, gb2)
    return [out] + ([h] if keep else []) + [gb1, gw2, gb2, w1, step.exp_avg, step.exp_avg_sq]


@pytest.mark.parametrize("panel", [64, 128])
@pytest.mark.parametrize("c", [1, 7, 8, 9])
@pytest.mark.parametrize("keep", [True, False], ids=["kept", "recomputed"])
@pytest.mark.parametrize("threads", [1, 3])
def test_the_pipelined_forward_equals_the_plain_loop_bit_for_bit(plain_build, monkeypatch, panel, c, keep, threads):
    problem = _problem(60, 300, c, seed=c + panel)  # 300 columns: full panels and a narrow last one
    want = _epoch(*problem, panel, keep, threads)  # the installed build: pipelined
    monkeypatch.setattr(native, "_LIB", plain_build)
    got = _epoch(*problem, panel, keep, threads)
    for i, (a, b) in enumerate(zip(got, want)):
        assert torch.equal(a, b), f"output {i} differs (max {float((a - b).abs().max()):.3g})"
