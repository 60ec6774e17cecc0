"""Fixtures of the graph tests."""

import pytest

from nsde_coin.graph import native


@pytest.fixture
def compiled_path(monkeypatch):
    """The compiled kernels on (``NSDE_COIN_NATIVE=1``) with the widest build this CPU runs (no
    ``NSDE_COIN_NATIVE_ISA``), whatever the environment of the test run says; restored after the test."""
    monkeypatch.setenv(native.ENV, "1")
    monkeypatch.delenv(native.ENV_ISA, raising=False)
