"""Facts about the machine a result was measured on: CPU model, torch and Python versions, thread count.

Benchmarks and run records (the CLI's JSON, ``benchmarks/results/*.json``) carry these so numbers can be compared
across machines. A library module, so benchmarks and the CLI share it without one importing the other.
"""

from __future__ import annotations

import platform
from typing import Any

import torch

__all__ = ["cpu_model", "machine_facts"]


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


def machine_facts() -> dict[str, Any]:
    """``{"threads", "torch", "python", "cpu"}``: torch's current intra-op thread count, the torch and Python
    versions and :func:`cpu_model`."""
    return {"threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
            "cpu": cpu_model()}
