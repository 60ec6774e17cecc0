"""Per-class random splits: 20 train / 30 val / rest test, disjoint, deterministic per seed."""

from __future__ import annotations

import pytest
import torch

from nsde_coin.graph.splits import random_split


def _labels():
    g = torch.Generator().manual_seed(0)
    counts = [50, 73, 120]
    y = torch.cat([torch.full((c,), k) for k, c in enumerate(counts)])
    return y[torch.randperm(y.numel(), generator=g)], counts


def test_sizes_per_class_and_disjoint_cover():
    y, counts = _labels()
    s = random_split(y, 3)
    assert s.sizes() == (60, 90, sum(counts) - 150)
    for k in range(3):
        assert int((y[s.train] == k).sum()) == 20
        assert int((y[s.val] == k).sum()) == 30
        assert int((y[s.test] == k).sum()) == counts[k] - 50
    allidx = torch.cat([s.train, s.val, s.test])
    assert torch.equal(allidx.sort().values, torch.arange(y.numel()))
    tr, va, te = s.masks(y.numel())
    assert not (tr & va).any() and not (tr & te).any() and not (va & te).any()


def test_same_seed_same_split_other_seed_differs():
    y, _ = _labels()
    a, b, c = random_split(y, 7), random_split(y, 7), random_split(y, 8)
    assert torch.equal(a.train, b.train) and torch.equal(a.val, b.val) and torch.equal(a.test, b.test)
    assert not torch.equal(a.train, c.train)


def test_class_too_small_names_class_size_and_need():
    y = torch.tensor([0] * 60 + [1] * 49 + [2] * 80)
    with pytest.raises(ValueError, match=r"class 1 has 49 nodes, fewer than the 50"):
        random_split(y, 0)
    with pytest.raises(ValueError, match=r"class 3 has 0 nodes"):
        random_split(torch.tensor([0] * 60 + [1] * 60 + [2] * 60), 0, num_classes=4)
    with pytest.raises(ValueError, match="seed"):
        random_split(y, -1)
