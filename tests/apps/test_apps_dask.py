"""The application sweeps on Dask with real processes on 127.0.0.1: tabular (model × seed chunk), few-shot (task
batch) and COVID (model × mask) on a LocalCluster of 2 worker processes give the in-process record, and a SIGTERM'd
``nsde-coin tabular --workers 2`` driver leaves no process behind.

Every process is started here, bounded in time, and killed by PID in a ``finally`` even when a test fails.
"""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
from multiprocessing import resource_tracker
from pathlib import Path

import numpy as np
import pytest
import torch

from nsde_coin.apps.covid import default_config, run_covid
from nsde_coin.apps.covid_data import covid_snapshots, load_england_covid, locate_covid_file
from nsde_coin.apps.fewshot import FewShotConfig, run_fewshot
from nsde_coin.apps.fewshot_data import FewShotFeatures
from nsde_coin.apps.tabular import TabularConfig, breast_cancer, run_tabular
from nsde_coin.sweep import open_client

distributed = pytest.importorskip("distributed", reason="needs the `distributed` extra (Dask)")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process trees from /proc")]

from processes import _alive, _descendants, _kill, _wait  # noqa: E402  (the PID helpers of tests/processes.py)


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of 2 single-threaded worker processes; every process it started is killed by PID at the end.
    multiprocessing's resource tracker (a child of this process, started with the first worker) is started first, so
    it is not among them: killed, it made a later test's workers print "resource_tracker: process died unexpectedly,
    relaunching"."""
    resource_tracker.ensure_running()
    before = _descendants(os.getpid())
    family: set[int] = set()
    try:
        with open_client(2, None) as cl:
            family = _descendants(os.getpid()) - before
            yield cl
    finally:
        family |= _descendants(os.getpid()) - before
        _kill(family)


def _close(a, b, rel: float, path: str = "") -> None:
    """Records equal: floats to ``rel`` (relative, or absolute below 1), everything else exactly."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _close(a[k], b[k], rel, f"{path}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, rel, f"{path}[{i}]")
    elif isinstance(a, float):
        assert math.isclose(a, b, rel_tol=rel, abs_tol=rel), (path, a, b)
    else:
        assert a == b, (path, a, b)


def test_tabular_on_two_workers_equals_in_process(client):
    cfg = TabularConfig(seeds=3, epochs=15, layer_num=10)
    here = run_tabular(breast_cancer(), cfg)
    there = run_tabular(breast_cancer(), cfg, client=client, seeds_per_unit=1)  # 6 units: 2 models × 3 seeds
    # one seed trained alone vs stacked with the others: the same float operations per member up to the batched
    # kernels' rounding; measured: identical at this size, AUC/AUPR within 1.4e-5 after 200 epochs (6 seeds, chunks
    # of 1 and 3) and accuracy identical. 1e-4 absolute leaves a 7x margin; an accuracy is a count of samples
    assert here["per_seed"].keys() == there["per_seed"].keys()
    for name in here["per_seed"]:
        for a, b in zip(here["per_seed"][name], there["per_seed"][name], strict=True):
            assert abs(a["accuracy"] - b["accuracy"]) <= 100 / 549 + 1e-9  # at most one of 549 scored samples
            assert abs(a["roc_auc"] - b["roc_auc"]) <= 1e-4 and abs(a["aupr"] - b["aupr"]) <= 1e-4
    assert here["stability"] == there["stability"] and here["config"] == there["config"]


def test_fewshot_on_two_workers_equals_in_process(client):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), 20)
    feats = (rng.normal(size=(6, 5)) * 3)[labels] + rng.normal(size=(120, 5))
    data = FewShotFeatures(torch.tensor(feats, dtype=torch.float32), torch.tensor(labels), None, "synthetic", {})
    cfg = FewShotConfig(n_tasks=12, task_batch=4, epochs=20, n_query=5)
    here = run_fewshot(data, cfg)
    there = run_fewshot(data, cfg, client=client)  # 3 units of 4 tasks
    # each batch is the same computation in a worker as here (same tensors, seeds, thread count): measured
    # identical; accuracies are multiples of 1/25 per task, so 1e-9 only absorbs the mean's last bit
    _close(here, there, 1e-9)


def test_covid_on_two_workers_equals_in_process(client):
    if locate_covid_file() is None:
        pytest.skip("England COVID data not found: place england_covid.json in <repo>/../shared/data/covid/ or "
                    "$NSDE_COIN_DATA/covid/ (see shared/data/README.md)")
    snaps = covid_snapshots(load_england_covid())
    cfg = default_config(True, masks=2, inits=2, epochs=12, models=("lr", "mlp", "gcn", "coin"))
    here = run_covid(snaps, cfg)
    there = run_covid(snaps, cfg, client=client)  # 6 units: 3 trained models × 2 masks
    # a mask's 2 runs alone vs all 4 at once, with the dropout masks drawn for all 4 and sliced: the same numbers up
    # to float32 rounding of the batched products (measured: MLP and GCN identical, COIN MSEs within 1.8e-7 on
    # values ~0.3-1 after 30 epochs). 1e-5 relative leaves a ~20x margin
    for model in ("mlp", "gcn", "coin", "lr"):
        _close(here["results"][model]["test_mse"], there["results"][model]["test_mse"], 1e-5, model)
        _close(here["results"][model]["test_mse_per_mask"], there["results"][model]["test_mse_per_mask"], 1e-5)


def test_sigterm_of_a_tabular_driver_with_two_workers_leaves_no_process(tmp_path):
    log = tmp_path / "stderr.txt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "wb") as err:
        drv = subprocess.Popen([sys.executable, "-m", "nsde_coin.cli", "tabular", "--workers", "2", "--seeds", "8",
                                "--epochs", "300", "--layer-num", "5", "--json"],
                               stdout=subprocess.DEVNULL, stderr=err, env=env)
    family: set[int] = set()
    try:
        # the sweep is running once a unit has finished (the driver's bar counts units: 2 models × 4 chunks)
        _wait(lambda: drv.poll() is not None or re.search(rb"\b[1-7]/8\b", log.read_bytes()), 300,
              "the first finished unit")
        assert drv.poll() is None, log.read_text()[-2000:]
        family = _descendants(drv.pid)
        assert len(family) >= 2  # its two worker processes (and multiprocessing's resource tracker)
        os.kill(drv.pid, signal.SIGTERM)
        assert drv.wait(timeout=120) == 130  # cli.py: "interrupted", futures cancelled, cluster closed
        assert b"interrupted" in log.read_bytes()
        try:  # the closed cluster's processes exit; give them a moment
            _wait(lambda: not [p for p in family if _alive(p)], 60, "the sweep's processes to exit")
        except AssertionError:
            pass
        assert [p for p in family if _alive(p)] == []
    finally:
        _kill([drv.pid, *family])
        drv.wait(timeout=30)


def test_bad_engine_arguments_fail_before_any_work(capsys):
    from nsde_coin.cli import main

    with pytest.raises(ValueError, match="workers must be an int >= 1"):
        run_tabular(breast_cancer(), TabularConfig(seeds=1, epochs=1), workers=0)
    with pytest.raises(ValueError, match="not both"):
        run_fewshot(None, FewShotConfig(), workers=2, client="tcp://127.0.0.1:1")
    assert main(["tabular", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1", "--no-progress"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["covid", "--workers", "0", "--no-progress"]) == 2
    assert "--workers 0 is not valid" in capsys.readouterr().err
