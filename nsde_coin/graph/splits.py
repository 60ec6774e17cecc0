"""Random per-class splits of the benchmark protocol: 20 training and 30 validation nodes per class, the rest test.

A split is a pure function of ``(labels, seed)``: the same seed gives the same split on every machine (NumPy's
``default_rng(seed)``, PCG64, one permutation per class in class order).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Split:
    """Node indices of one split (each a sorted 1-D long tensor; the three are disjoint and cover all nodes)."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    seed: int

    def sizes(self) -> tuple[int, int, int]:
        """``(n_train, n_val, n_test)``."""
        return int(self.train.numel()), int(self.val.numel()), int(self.test.numel())

    def to(self, device: torch.device | str) -> Split:
        """The same split with its index tensors on ``device``."""
        return Split(self.train.to(device), self.val.to(device), self.test.to(device), self.seed)

    def masks(self, num_nodes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Boolean masks ``(train, val, test)`` of length ``num_nodes``."""
        out = []
        for idx in (self.train, self.val, self.test):
            m = torch.zeros(num_nodes, dtype=torch.bool)
            m[idx] = True
            out.append(m)
        return out[0], out[1], out[2]


def _integer_labels(y) -> np.ndarray:
    """``y`` as int64 class ids; a float label must be a whole number (no silent truncation of 0.5 or 1.7)."""
    arr = torch.as_tensor(y).reshape(-1).cpu().numpy()
    if arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"labels must be integer class ids, got dtype {arr.dtype}")
    bad = ~np.isfinite(arr) | (arr != np.round(arr))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"labels must be integer class ids, got dtype {arr.dtype} with {int(bad.sum())} "
                         f"non-integer value(s), e.g. y[{i}] = {float(arr[i])!r}; whole-number floats (2.0) are "
                         f"accepted")
    return arr.astype(np.int64)


def random_split(
    y: torch.Tensor,
    seed: int,
    *,
    train_per_class: int = 20,
    val_per_class: int = 30,
    num_classes: int | None = None,
) -> Split:
    """Sample ``train_per_class`` training and ``val_per_class`` validation nodes per class; all others are test.

    Args:
        y: (n,) integer labels in ``[0, num_classes)``. Floating-point labels are accepted only when every value
            is a whole number (``2.0`` is class 2); ``0.5`` or ``1.7`` raise ``ValueError`` (they used to be
            truncated silently), as do NaN/Inf.
        seed: split seed (non-negative int).
        num_classes: defaults to ``y.max() + 1``; every class in ``range(num_classes)`` must be large enough.

    Raises ``ValueError`` naming the class, its size and the required ``train_per_class + val_per_class`` when a
    class is too small, and for negative per-class counts or seeds.
    """
    if train_per_class < 0 or val_per_class < 0:
        raise ValueError(f"train_per_class={train_per_class} and val_per_class={val_per_class} must be >= 0")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    labels = _integer_labels(y)
    if labels.size and labels.min() < 0:
        raise ValueError(f"labels must be >= 0, got {labels.min()}")
    k = int(num_classes) if num_classes is not None else (int(labels.max()) + 1 if labels.size else 0)
    need = train_per_class + val_per_class
    counts = np.bincount(labels, minlength=k)
    for c in range(k):
        if counts[c] < need:
            raise ValueError(f"class {c} has {int(counts[c])} nodes, fewer than the {need} the split needs "
                             f"({train_per_class} train + {val_per_class} val per class)")
    rng = np.random.default_rng(int(seed))
    train, val = [], []
    for c in range(k):
        members = np.flatnonzero(labels == c)
        perm = rng.permutation(members)
        train.append(perm[:train_per_class])
        val.append(perm[train_per_class:need])
    train_idx = np.sort(np.concatenate(train)) if train else np.zeros(0, np.int64)
    val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, np.int64)
    rest = np.ones(labels.size, dtype=bool)
    rest[train_idx] = False
    rest[val_idx] = False
    return Split(torch.from_numpy(train_idx), torch.from_numpy(val_idx), torch.from_numpy(np.flatnonzero(rest)),
                 int(seed))
