"""Temporarily change torch's intra-op thread count (process-wide), restoring it on exit.

On the small, often shared CPUs this toolkit targets, extra OpenMP threads on small tensors mostly wait for each
other; the commands default to one thread and small sparse maps run single-threaded (:mod:`nsde_coin.graph.sparse`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Optional

import torch


@contextlib.contextmanager
def torch_threads(threads: Optional[int]) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)``; ``None`` or 0 leaves the setting alone."""
    before = torch.get_num_threads()
    if not threads or threads == before:
        yield
        return
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)
