"""Small problems shared by the tests (import as ``from problems import ...``; pytest puts tests/ on sys.path)."""

from __future__ import annotations

import torch


def ring_graph(n: int, extra: int, seed: int = 0) -> torch.Tensor:
    """edge_index (2, n + extra): a ring over n nodes (so the graph is connected) plus ``extra`` seeded random edges
    (self-loops and duplicates included, which every Laplacian constructor must drop or collapse)."""
    g = torch.Generator().manual_seed(seed)
    ring = torch.stack([torch.arange(n), (torch.arange(n) + 1) % n])
    return torch.cat([ring, torch.randint(0, n, (2, extra), generator=g)], 1)
