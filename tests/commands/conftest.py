"""Fixtures of the benchmark-script tests: ``benchmarks/`` (not a package) importable for one test."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    """benchmarks/ first on sys.path for one test; the modules imported from it (_report, _roofline, ...) are
    dropped after, so the next test imports them afresh."""
    monkeypatch.setattr(sys, "path", [str(BENCH), *sys.path])
    before = set(sys.modules)
    yield BENCH
    for name in set(sys.modules) - before:
        if str(BENCH) in str(getattr(sys.modules[name], "__file__", "") or ""):
            del sys.modules[name]
