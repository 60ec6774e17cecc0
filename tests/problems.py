"""What the tests share: small problems, the repository's paths and the data-set skip (import as
``from problems import ...``; pytest puts tests/ on sys.path, see ``pythonpath`` in setup.cfg).

The tests mirror the package: ``core/`` (solvers, fields, integrate, model, loop, training, PDE), ``graph/``,
``apps/``, ``certify/``, ``commands/`` (the CLI) and ``docs/`` (README, API surface, docstrings).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import scipy.sparse as sp
import torch

REPO = Path(__file__).resolve().parents[1]
"""The repository's root (tests/ is one level down)."""


def data_root() -> Optional[Path]:
    """The shared data folder (``<repo>/../shared/data`` or ``$NSDE_COIN_DATA``), or None when it is absent."""
    from nsde_coin.graph.datasets import default_data_root

    root = default_data_root()
    return Path(root) if root is not None and Path(root).is_dir() else None


DATA = data_root()
needs_data = pytest.mark.skipif(DATA is None, reason="shared data folder (<repo>/../shared/data or $NSDE_COIN_DATA) "
                                                     "is absent")
"""Skip marker of the tests that read the real data sets (they copy them to a temp dir before PyG writes)."""


def ragged_rows(n: int, d: int, g: torch.Generator) -> torch.Tensor:
    """(n, d) float64 row-normalised binary features whose rows alternate, six at a time, between 0-5 features and
    long rows of 40 + i: the compiled forward's pipelined gather (csrc/pipelined.h) carries the previous node's dots
    in its first iterations, so rows shorter than those and rows far longer both matter. Draws from ``g``."""
    b = torch.zeros(n, d, dtype=torch.float64)
    for i in range(n):
        b[i, torch.randperm(d, generator=g)[: i % 6 if i % 12 < 6 else 40 + i]] = 1.0
    return b / b.sum(1, keepdim=True).clamp_min(1)


def ring_graph(n: int, extra: int, seed: int = 0) -> torch.Tensor:
    """edge_index (2, n + extra): a ring over n nodes (so the graph is connected) plus ``extra`` seeded random edges
    (self-loops and duplicates included, which every Laplacian constructor must drop or collapse)."""
    g = torch.Generator().manual_seed(seed)
    ring = torch.stack([torch.arange(n), (torch.arange(n) + 1) % n])
    return torch.cat([ring, torch.randint(0, n, (2, extra), generator=g)], 1)


def sbm_graph(n_per: int = 60, k: int = 3, d: int = 40, seed: int = 0):
    """A small stochastic block model (k classes of ``n_per`` nodes) with class-correlated sparse binary features
    (d), connected by a path, preprocessed like the benchmark graphs: the protocol tests' data set."""
    from nsde_coin.graph.datasets import preprocess

    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(k), n_per)
    n = y.size
    same = y[:, None] == y[None, :]
    a = rng.random((n, n)) < np.where(same, 0.08, 0.01)
    a = np.triu(a, 1)
    a = a | a.T
    a[np.arange(n - 1), np.arange(1, n)] = True  # a path keeps it connected
    x = (rng.random((n, d)) < 0.05) | ((rng.random((n, d)) < 0.3) & (np.arange(d)[None, :] % k == y[:, None]))
    return preprocess(sp.csr_matrix(a.astype(float)), x.astype(float), y, name="sbm")


def bag_of_words(n: int, d: int, seed: int = 0, zero_rows=(1, 4)) -> torch.Tensor:
    """(n, d) float64 row-normalised binary features (the loaders' preprocessing of bag-of-words graphs), density
    0.2, with the rows ``zero_rows`` all zero (they read only the biases)."""
    g = torch.Generator().manual_seed(seed)
    b = (torch.rand(n, d, generator=g, dtype=torch.float64) < 0.2).double()
    b[list(zero_rows)] = 0.0
    cnt = b.sum(1, keepdim=True)
    return torch.where(cnt > 0, b / cnt.clamp_min(1), b)
