"""Shared fixtures of the test suite."""

import pytest
import torch


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
