"""The protocol on Dask with real processes on 127.0.0.1: a `dask scheduler` + `dask worker` cluster gives the
in-process records, a killed worker loses no run and duplicates none, a SIGTERM'd or kill -9'd driver leaves no
process behind and its rerun resumes without duplicates, and a second driver on the same --out refuses.

Every process is started here, bounded in time, and killed by PID in a ``finally`` even when a test fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from nsde_coin.graph.protocol import ResultsInUseError, TrainConfig, run_protocol

distributed = pytest.importorskip("distributed", reason="needs the `distributed` extra (Dask)")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process trees from /proc")]

TESTS = Path(__file__).resolve().parent
DASK = Path(sys.executable).parent / "dask"
HP = {"layer_num": 5, "sigma2": 0.2}
CFG = TrainConfig(max_epochs=60, patience=10)
CFG_LONG = TrainConfig(max_epochs=150, patience=150)  # ~0.2-0.8 s per run: a sweep lasts long enough to be hit

DRIVER = """
import sys
sys.path[:0] = [{tests!r}, {tests_root!r}]
from test_graph_protocol_dask import CFG_LONG, HP, graph
from nsde_coin.graph.protocol import run_protocol

if __name__ == "__main__":  # spawned Dask workers re-import this file
    workers = int(sys.argv[2]) or None
    try:
        run_protocol(graph(), "coin", HP, splits=3, inits=4, out=sys.argv[1], config=CFG_LONG, progress=False,
                     workers=workers)
    except KeyboardInterrupt:
        sys.exit(130)
"""


def graph():
    sys.path[:0] = [str(TESTS), str(TESTS.parent)]  # this folder and tests/ (problems.py), also in the drivers
    from problems import sbm_graph

    return sbm_graph()


from processes import _alive, _children, _descendants, _kill, _wait  # noqa: E402,F401  (the PID helpers)


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _keys(path: Path) -> list[str]:
    keys = []
    for line in path.read_text().splitlines():
        try:
            keys.append(json.loads(line)["key"])
        except (ValueError, KeyError):
            pass  # a line cut by kill -9: reported as corrupt and redone on resume
    return keys


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """`dask scheduler` + two `dask worker --no-nanny --nthreads 1` processes on 127.0.0.1; yields (address, procs)."""
    if not DASK.exists():
        pytest.skip(f"no `dask` command next to {sys.executable}")
    tmp = tmp_path_factory.mktemp("dask")
    sfile = tmp / "scheduler.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["NSDE_TEST_DASK_DIR"] = str(tmp)
    procs: list[subprocess.Popen] = []
    try:
        procs.append(subprocess.Popen([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                       "--scheduler-file", str(sfile), "--idle-timeout", "600"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=open(tmp / "scheduler.log", "wb")))
        address = _wait(lambda: _exited(procs[0], tmp / "scheduler.log") or (
            sfile.exists() and json.loads(sfile.read_text() or "{}").get("address")), 120, "the scheduler file")
        for _ in range(2):
            procs.append(_worker(address, env))
        with distributed.Client(address, timeout="60s") as cl:
            cl.wait_for_workers(2, timeout=120)
        yield address, procs, env
    finally:
        _kill([p.pid for p in procs])
        for p in procs:
            p.wait(timeout=30)


def _exited(proc: subprocess.Popen, log: Path) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"{proc.args[:2]} exited with {proc.returncode}: {log.read_text()[-2000:]}")
    return False


def _worker(address: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([str(DASK), "worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--no-nanny",
                             "--no-dashboard", "--death-timeout", "60", "--local-directory",
                             env["NSDE_TEST_DASK_DIR"]], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _records(path: Path) -> dict[str, tuple]:
    out = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        out[r["key"]] = (r["split_seed"], r["init_seed"], r["epochs"], r["best_epoch"], r["val_acc"], r["test_acc"])
    return out


# ---------------------------------------------------------------------------------------------------- tests
def test_a_scheduler_and_two_worker_processes_give_the_in_process_records(cluster, tmp_path):
    address, _, _ = cluster
    data = graph()
    here = run_protocol(data, "coin", HP, splits=3, inits=2, out=tmp_path / "here.jsonl", config=CFG, progress=False)
    there = run_protocol(data, "coin", HP, splits=3, inits=2, out=tmp_path / "dask.jsonl", config=CFG,
                         progress=False, client=address)
    assert there["new_runs"] == 6 and there["failed"] == 0 and len(_keys(tmp_path / "dask.jsonl")) == 6
    a, b = _records(tmp_path / "here.jsonl"), _records(tmp_path / "dask.jsonl")
    # same keys, and run by run the same epochs, best epoch and accuracies: same code, seeds and thread count (1) on
    # the same CPU, so the trainings are the same float operations
    assert a == b and len(a) == 6
    assert there["test_acc_mean"] == here["test_acc_mean"]
    again = run_protocol(data, "coin", HP, splits=3, inits=2, out=tmp_path / "dask.jsonl", config=CFG,
                         progress=False, client=address)
    assert again["new_runs"] == 0 and _lines(tmp_path / "dask.jsonl") == 6


def test_kill_9_of_a_worker_mid_sweep_loses_and_duplicates_no_run(cluster, tmp_path):
    address, procs, env = cluster
    victim = _worker(address, env)  # a third worker, ours to kill
    procs.append(victim)  # the fixture kills it too if this test fails early
    out = tmp_path / "runs.jsonl"
    data = graph()
    with distributed.Client(address, timeout="60s") as cl:
        cl.wait_for_workers(3, timeout=120)
        vaddr = next(a for a, pid in cl.run(os.getpid).items() if pid == victim.pid)
    seen: dict[str, int] = {}

    import threading

    def killer():
        with distributed.Client(address, timeout="60s") as cl:
            _wait(lambda: _lines(out) >= 1 and cl.processing(workers=[vaddr]).get(vaddr), 300,
                  "a record and a task on the victim")
            seen["lines"] = _lines(out)
            seen["busy"] = len(cl.processing(workers=[vaddr])[vaddr])
            os.kill(victim.pid, signal.SIGKILL)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    summary = run_protocol(data, "coin", HP, splits=4, inits=4, out=out, config=CFG_LONG, progress=False,
                           client=address)
    t.join(timeout=60)
    assert victim.wait(timeout=30) == -signal.SIGKILL
    assert seen["lines"] < 16 and seen["busy"] >= 1  # it died mid-sweep, holding a run
    keys = _keys(out)
    assert len(keys) == 16 and len(set(keys)) == 16  # every run exactly once
    assert summary["runs"] == 16 and summary["new_runs"] == 16


def _driver(out: Path, workers: int, tmp: Path) -> subprocess.Popen:
    script = tmp / "driver.py"
    script.write_text(DRIVER.format(tests=str(TESTS), tests_root=str(TESTS.parent)))
    return subprocess.Popen([sys.executable, str(script), str(out), str(workers)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "kill-9"])
def test_a_stopped_driver_leaves_no_process_and_its_rerun_resumes(sig, tmp_path):
    out = tmp_path / "runs.jsonl"
    drv = _driver(out, 2, tmp_path)
    family: set[int] = set()
    try:
        _wait(lambda: _lines(out) >= 1, 300, "the driver's first record")
        family = _descendants(drv.pid)
        assert len(family) >= 2  # its two worker processes (and multiprocessing's resource tracker)
        done_before = _lines(out)
        os.kill(drv.pid, sig)
        code = drv.wait(timeout=120)
        assert code == (130 if sig == signal.SIGTERM else -signal.SIGKILL)
        survivors = lambda: [p for p in family if _alive(p)]  # noqa: E731
        try:  # workers notice their parent's death through a pipe; give them a moment
            _wait(lambda: not survivors(), 60, "the sweep's processes to exit")
        except AssertionError:
            pass
        assert survivors() == []
        assert done_before < 12
    finally:
        _kill([drv.pid, *family])
        drv.wait(timeout=30)
    before = _keys(out)
    assert len(before) == len(set(before)) >= 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # kill -9 may cut the last line: reported and redone
        rerun = run_protocol(graph(), "coin", HP, splits=3, inits=4, out=out, config=CFG_LONG, progress=False)
    keys = _keys(out)
    assert len(keys) == 12 and len(set(keys)) == 12 and set(before) <= set(keys)  # every run once, none redone
    assert rerun["runs"] == 12 and rerun["new_runs"] == 12 - len(before)


def test_a_second_driver_on_the_same_out_refuses_naming_the_first(tmp_path):
    out = tmp_path / "runs.jsonl"
    drv = _driver(out, 0, tmp_path)  # in-process sweep
    try:
        lock = Path(f"{out}.lock")
        _wait(lambda: lock.exists() and lock.read_text().split()[:1] == [str(drv.pid)], 300, "the first driver's lock")
        with pytest.raises(ResultsInUseError, match=f"driver PID {drv.pid} on host "):
            run_protocol(graph(), "coin", HP, splits=3, inits=4, out=out, config=CFG_LONG, progress=False)
        assert drv.poll() is None  # refused at once: the first (12 long runs) is still running
    finally:
        _kill([drv.pid])
        drv.wait(timeout=30)
    # the lock died with its holder: a rerun takes it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        s = run_protocol(graph(), "coin", HP, splits=1, inits=1, out=out, config=CFG_LONG, progress=False)
    assert s["runs"] == 1
