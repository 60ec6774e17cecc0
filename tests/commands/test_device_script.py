"""``scripts/device_cora_protocol.sh`` (issue 12.3's GPU run, prepared for a lent machine) run for real on the CPU:
its summary counts the records it wrote and their accuracy, a budget too short for the protocol is reported as a cut,
a TERM from outside still leaves the records and their summary, and a run without the prepared data fails in one line
before any work; ``scripts/device_summary.py`` on records with a line cut mid-write."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from problems import DATA, REPO, needs_data

SCRIPT = REPO / "scripts" / "device_cora_protocol.sh"


def _env(tmp_path, **env) -> dict:
    """The script's environment: a CPU setting with records, output and data under tmp_path, ``env`` on top."""
    return {**os.environ, "DEVICE": "cpu", "PYTHON": sys.executable, "OUT": str(tmp_path / "out"),
            "RECORDS_DIR": str(tmp_path / "records"), "ROOT": str(tmp_path / "data"), **env}


def _run(tmp_path, **env):
    """The script's ``run`` step to its end, under :func:`_env`."""
    return subprocess.run(["bash", str(SCRIPT), "run"], env=_env(tmp_path, **env), capture_output=True, text=True,
                          timeout=300)


@pytest.fixture
def cora_root(tmp_path):
    if DATA is None or not (DATA / "npz" / "cora.npz").is_file():
        pytest.skip("shared data folder with npz/cora.npz is absent")
    (tmp_path / "data" / "npz").mkdir(parents=True)
    shutil.copy(DATA / "npz" / "cora.npz", tmp_path / "data" / "npz")
    return tmp_path


@needs_data
def test_run_writes_a_summary_of_the_records_it_made(cora_root):
    r = _run(cora_root, SPLITS="1", INITS="2")
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads((cora_root / "out" / "summary.json").read_text())
    recs = [json.loads(line) for line in (cora_root / "records" / "cora_cpu.jsonl").read_text().splitlines()]
    assert s["requested"] == 2 and s["recorded"] == len(recs) == 2 and s["ok"] == 2 and s["failed"] == 0
    assert s["complete"] and not s["cut_by_budget"] and s["rc"] == 0
    acc = [100 * r["test_acc"] for r in recs]
    assert s["test_acc_mean"] == pytest.approx(sum(acc) / 2)
    assert 75.0 < s["test_acc_mean"] < 88.0  # Cora COIN, paper setting: 82.3 ± 1.0 % over the 2000 runs
    assert all(r["device"] == "cpu" and r["batch"] == 2 for r in recs)  # the inits ran as one batched model
    env = json.loads((cora_root / "out" / "env.json").read_text())
    assert env["device"] == "cpu" and env["torch"]


@needs_data
def test_a_budget_too_short_is_reported_as_a_cut(cora_root):
    r = _run(cora_root, SPLITS="3", INITS="1", BUDGET_S="1")
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads((cora_root / "out" / "summary.json").read_text())
    assert s["cut_by_budget"] and s["rc"] == 124 and not s["complete"]
    assert s["recorded"] < 3 and s["requested"] == 3


def test_run_without_the_prepared_data_fails_in_one_line(tmp_path):
    r = _run(tmp_path)
    assert r.returncode == 2
    assert "cora.npz not found" in r.stderr and "prepare" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "records").exists() or not any((tmp_path / "records").iterdir())


def test_an_unknown_step_names_the_valid_ones(tmp_path):
    r = subprocess.run(["bash", str(SCRIPT), "go"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "prepare|run" in r.stderr and "'go'" in r.stderr


@needs_data
def test_a_term_from_outside_still_leaves_the_records_and_their_summary(cora_root):
    """The device tool ends a command past its limit: the script's trap stops the protocol, copies the records and
    writes the summary (rc 143) instead of losing the call's work."""
    proc = subprocess.Popen(["bash", str(SCRIPT), "run"], env=_env(cora_root, SPLITS="50", INITS="1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        full = cora_root / "records" / "cora_cpu.jsonl"
        while time.monotonic() < deadline and not (full.is_file() and full.read_text().count("\n") >= 1):
            time.sleep(0.5)  # until the protocol (after the smoke split) has written a record
        assert full.is_file(), "the protocol wrote no record within 120 s"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err[-2000:]
    s = json.loads((cora_root / "out" / "summary.json").read_text())
    assert s["stopped_by_signal"] and s["rc"] == 143 and not s["complete"] and s["requested"] == 50
    copied = (cora_root / "out" / "cora_cpu.jsonl").read_text().splitlines()
    assert 1 <= s["recorded"] == len(copied) < 50
    ps = subprocess.run(["pgrep", "-f", str(cora_root / "records")], capture_output=True, text=True)
    assert ps.stdout.strip() == "", "the protocol outlived the script"


def test_summary_skips_a_line_cut_mid_write_and_counts_this_calls_runs(tmp_path):
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import device_summary as ds
    finally:
        sys.path.pop(0)
    path = tmp_path / "r.jsonl"
    recs = [{"status": "ok", "test_acc": a, "epochs": e} for a, e in ((0.80, 100), (0.84, 140), (0.82, 120))]
    recs.append({"status": "nonfinite_loss", "test_acc": None, "epochs": 7})
    path.write_text("".join(json.dumps(r) + "\n" for r in recs) + '{"status": "ok", "test_a')
    assert ds.records(str(path)) == recs and ds.records(str(tmp_path / "absent")) == []
    s = ds.summary(str(path), rc=124, wall_s=2.0, budget_s=60, splits=5, inits=2, before=1)
    assert (s["recorded"], s["ok"], s["failed"], s["requested"]) == (4, 3, 1, 10)
    assert s["test_acc_mean"] == pytest.approx(82.0) and s["test_acc_std"] == pytest.approx(2.0)
    assert s["epochs_mean"] == pytest.approx(120.0)
    assert s["cut_by_budget"] and not s["stopped_by_signal"] and not s["complete"]
    assert s["runs_per_s_this_call"] == pytest.approx(1.5) and s["projected_s_for_all"] == pytest.approx(10 / 1.5)
    assert ds.main(["count", str(path)]) == 0 and ds.main(["nonsense"]) == 2
