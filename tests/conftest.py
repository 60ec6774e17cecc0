"""Shared fixtures of the test suite, and the hypothesis profiles of the property-based tests."""

import os

import pytest
import torch
from hypothesis import settings

# "ci" (the default): reproducible — the same examples on every run and machine (derandomize, no example database),
# bounded in number (max_examples), no per-example deadline (CI machines are shared and their speed varies), and a
# failure prints the blob that replays it (@reproduce_failure). "thorough" searches 20x more random examples, for a
# local hunt: `pytest --hypothesis-profile=thorough tests/{core,graph}/test_properties_*.py`
# (or HYPOTHESIS_PROFILE=thorough).
settings.register_profile("ci", derandomize=True, max_examples=25, deadline=None, print_blob=True, database=None)
settings.register_profile("thorough", max_examples=500, deadline=None, print_blob=True, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True, scope="session")
def _one_intra_op_thread():
    """Run every test with one torch intra-op thread, restoring the previous count at the end of the session.

    Why: the tests use small tensors, and CI and the development machines have 2 cores shared by several processes.
    With more than one OpenMP thread per process the threads oversubscribe the cores and mostly wait for each other
    (sparse graph kernels measured up to 200x slower, SDE batches ~25x slower); one thread is also what keeps CPU
    results independent of the machine's core count.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
