"""Facts about the machine: CPU model, torch and Python versions, thread count, one core's L2 cache size.

Benchmarks and run records (the CLI's JSON, ``benchmarks/results/*.json``) carry these so numbers can be compared
across machines; the graph kernels size their column panels by :func:`l2_cache_bytes`. A library module, so
benchmarks, the CLI and the kernels share it without one importing the other.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path
from typing import Any

import torch

__all__ = ["cpu_model", "l2_cache_bytes", "machine_facts"]

DEFAULT_L2_BYTES = 1 << 20  # where the L2 size cannot be read: the smaller of the CPUs measured (AMD EPYC, 1 MiB)


def cpu_model() -> str:
    """The CPU model name (from /proc/cpuinfo where available, else :func:`platform.processor`, else
    ``"unknown"``), for benchmark and run records."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _size_bytes(text: str) -> int:
    """A sysfs cache size ("1024K", "2M", "512") in bytes."""
    text = text.strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(text.rstrip("KMG")) * scale


@functools.cache
def l2_cache_bytes() -> int:
    """Bytes of one core's level-2 cache: cpu0's level-2 data or unified cache in Linux's sysfs, else
    :data:`DEFAULT_L2_BYTES`. Read once per process (the graph kernels size their column panels by it, so float
    rounding of a COIN run depends on it: :func:`machine_facts` records it). On CPUs with cores of different L2
    sizes this is cpu0's, not necessarily the one the process runs on."""
    root = Path("/sys/devices/system/cpu/cpu0/cache")
    try:
        indices = sorted(root.glob("index*"))
    except OSError:
        indices = []
    for index in indices:
        try:  # an unreadable entry skips that cache only
            if (index / "level").read_text().strip() == "2" and \
                    (index / "type").read_text().strip() in ("Data", "Unified"):
                size = _size_bytes((index / "size").read_text())
                if size > 0:
                    return size
        except (OSError, ValueError):
            continue
    return DEFAULT_L2_BYTES


def machine_facts() -> dict[str, Any]:
    """``{"threads", "torch", "python", "cpu", "l2_cache_bytes"}``: torch's current intra-op thread count, the torch
    and Python versions, :func:`cpu_model` and :func:`l2_cache_bytes`."""
    return {"threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
            "cpu": cpu_model(), "l2_cache_bytes": l2_cache_bytes()}
