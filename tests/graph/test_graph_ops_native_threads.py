"""The compiled base layer on several threads (csrc/module.c's nsde_run_jobs: thread t runs panels t, t + T, ...):
every thread count gives the backward's numbers bit for bit (each panel's sums run alike) and the forward's to float
rounding of the per-thread output sums, with kept or recomputed activations, the gathered or scattered xᵀ gz, and
Adam inside the backward; SparseBase hands torch's thread count to the kernel; the POSIX-threads fallback (built
here without OpenMP) gives the same numbers. Skips where the kernel was not built."""

import numpy as np
import pytest
import torch
from compiled import NATIVE_ONLY, build_library, setup_extension_arg
from problems import bag_of_words

from nsde_coin.graph import native
from nsde_coin.graph import sparse as sp
from nsde_coin.graph.backward_adam import BackwardAdam
from nsde_coin.graph.sparse_base import SparseBase, sparse_features

pytestmark = NATIVE_ONLY

N, D, C, PANEL = 70, 150, 7, 16  # 10 panels, the last 6 wide: every thread count below splits them unevenly


def _case(seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = sparse_features(bag_of_words(N, D, seed=seed).float().to_sparse_csr())
    w1, b1, w2 = (torch.randn(s, generator=g) * 0.3 for s in ((D, D), (D,), (C, D)))
    return feats, w1, b1, w2, torch.randn(N, C, generator=g)


def _run(threads, keep, scatter, adam):
    feats, w1, b1, w2, g = _case()
    out = torch.zeros(N, C)
    h = torch.empty(N * D) if keep else None
    native.forward(feats, w1, b1, w2, out, PANEL, h, threads)
    gw1, gb1, gw2 = torch.full((D, D), float("nan")), torch.empty(D), torch.zeros(C, D)
    state = None
    if adam:  # W1 updated in place from its gradient, with the moments of a first step
        step = BackwardAdam(lr=0.05, weight_decay=0.01)
        hy = step.begin(w1, PANEL)
        state, gw1 = (w1, step.exp_avg, step.exp_avg_sq, hy), None
    native.backward(feats, g, h if keep else (w1.clone(), b1), w2, gw1, gb1, gw2, PANEL, state, scatter, threads)
    return [out, gb1, gw2] + ([w1, state[1], state[2]] if adam else [gw1])


@pytest.mark.parametrize("keep", [True, False], ids=["kept", "recomputed"])
@pytest.mark.parametrize("scatter", [False, True], ids=["gather", "scatter"])
@pytest.mark.parametrize("adam", [False, True], ids=["grad", "adam"])
def test_every_thread_count_gives_the_same_numbers(keep, scatter, adam):
    one = _run(1, keep, scatter, adam)
    for threads in (2, 3, 4, 10, 64):
        got = _run(threads, keep, scatter, adam)
        # forward: per-thread partial sums of ≤ 10 panels added in thread order (float32 rounding of ~150 terms)
        np.testing.assert_allclose(got[0].numpy(), one[0].numpy(), rtol=0, atol=2e-6 * float(one[0].abs().max()))
        for a, b in zip(got[1:], one[1:]):  # backward: every panel's sums in the same order → bitwise
            assert torch.equal(a, b), f"threads={threads}"
    assert not torch.isnan(one[-1]).any()  # every column of ∇W1 (or of W1's Adam step) was written


def test_more_threads_than_panels_and_a_bad_count_are_clamped():
    one = _run(1, True, False, False)
    for threads in (0, -3, 1000):  # ≤ 0 runs one thread; more than panels / MAX_THREADS: one per panel at most
        got = _run(native.threads_for(D, PANEL, threads) if threads > 0 else threads, True, False, False)
        for a, b in zip(got[1:], one[1:]):
            assert torch.equal(a, b)


def test_sparse_base_passes_torch_threads_to_the_kernel(monkeypatch):
    """With 3 torch threads (and the small-work limit lifted) SparseBase runs the kernel on 3 threads and still
    equals the float64 dense reference; with 1 torch thread the kernel gets 1."""
    monkeypatch.setenv(native.ENV, "1")
    monkeypatch.setattr(sp, "SMALL_WORK", 0)
    seen = []
    real = native.threads_for
    monkeypatch.setattr(native, "threads_for", lambda d, p, t=None: seen.append(real(d, p, t)) or seen[-1])
    feats, w1, b1, w2, up = _case(seed=3)
    b2 = torch.randn(C, generator=torch.Generator().manual_seed(4))
    params = [t.clone().requires_grad_() for t in (w1, b1, w2, b2)]
    x = bag_of_words(N, D, seed=3)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        out = SparseBase.apply(*params, feats, PANEL)
        grads = torch.autograd.grad(out, params, up)
        torch.set_num_threads(1)
        SparseBase.apply(*params, feats, PANEL).backward(up)
    finally:
        torch.set_num_threads(before)
    assert seen == [3, 3, 1, 1]
    p64 = [p.detach().double().requires_grad_() for p in params]
    ref = (x + torch.relu(x @ p64[0] + p64[1])) @ p64[2].t() + p64[3]
    want = [ref.detach(), *torch.autograd.grad(ref, p64, up.double())]
    for a, b in zip([out.detach(), *grads], want):
        np.testing.assert_allclose(a.double().numpy(), b.numpy(), rtol=0, atol=1e-5 * float(b.abs().max()))


def _forked_child_runs_the_kernel(queue):
    try:
        one = _run(1, True, False, False)
        got = _run(None, True, False, False)  # torch's thread count (2), capped to 1 in a forked child
        queue.put(native.threads_for(D, PANEL, 2) == 1 and all(torch.equal(a, b) for a, b in zip(got[1:], one[1:])))
    except BaseException as err:  # noqa: BLE001 (reported to the parent)
        queue.put(repr(err))


def test_a_forked_child_runs_the_kernel_on_one_thread_instead_of_hanging():
    """After a 2-thread call the process holds libgomp's pool; a fork() child has none of its threads, and its first
    parallel region would wait forever. The child runs the kernel on one thread (no parallel region)."""
    import multiprocessing as mp

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _run(2, True, False, False)  # the parent's pool now exists
        ctx = mp.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_forked_child_runs_the_kernel, args=(queue,))
        child.start()
        child.join(120)
        alive = child.is_alive()
        if alive:
            child.kill()
            child.join()
    finally:
        torch.set_num_threads(before)
    assert not alive, "the forked child hung in the kernel"
    assert queue.get(timeout=10) is True


def test_every_kernel_file_is_a_source_or_a_dependency_of_the_build():
    """setuptools rebuilds the library when a file in ``depends`` changes: a header left out (pipelined.h was, at
    first) keeps a stale kernel after an edit, and is left out of a source distribution."""
    from pathlib import Path

    csrc = Path(native.__file__).resolve().parent / "csrc"
    listed = set(setup_extension_arg("sources")) | set(setup_extension_arg("depends"))
    on_disk = {f"nsde_coin/graph/csrc/{p.name}" for p in csrc.iterdir() if p.suffix in (".c", ".h")}
    assert on_disk == listed


@pytest.fixture(scope="module")
def pthread_build(tmp_path_factory):
    """The library built as a compiler without OpenMP builds it (module.c's POSIX-threads nsde_run_jobs)."""
    out = tmp_path_factory.mktemp("pthreads") / "kernel_pthreads.so"
    lib = build_library(out)
    assert b"GOMP_parallel" not in out.read_bytes()  # really the fallback: no OpenMP region in it
    return lib


@pytest.mark.parametrize("keep, scatter, adam", [(True, False, True), (False, True, False)],
                         ids=["kept-gather-adam", "recomputed-scatter-grad"])
def test_the_posix_threads_fallback_gives_the_openmp_builds_numbers(pthread_build, monkeypatch, keep, scatter, adam):
    """CI's compiler has OpenMP, so the fallback of a compiler without it (e.g. Apple clang) is built here: on 1, 2
    and 3 threads its backward equals the installed build's bit for bit (same kernel code, same flags), its forward
    to the rounding of the per-thread output sums."""
    want = {t: _run(t, keep, scatter, adam) for t in (1, 2, 3)}
    monkeypatch.setattr(native, "_LIB", pthread_build)
    for t in (1, 2, 3):
        got = _run(t, keep, scatter, adam)
        np.testing.assert_allclose(got[0].numpy(), want[1][0].numpy(), rtol=0,
                                   atol=2e-6 * float(want[1][0].abs().max()))
        for a, b in zip(got[1:], want[t][1:]):
            assert torch.equal(a, b), f"threads={t}"
