"""Resume keys cover the execution settings that change a result (threads, read-out path, device, dtype) while
default runs keep the keys files were written with; the sweep lock; the removed --shard and engine flag errors."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

import pytest
from problems import sbm_graph as _sbm

from nsde_coin.cli import main
from nsde_coin.graph.protocol import ResultsInUseError, RunSpec, SweepLock, TrainConfig, run_key, run_protocol

CFG = TrainConfig(max_epochs=30, patience=10)
HP = {"layer_num": 3, "sigma2": 0.2}


def _old_key(dataset, source, model, hparams, cfg, s, i) -> str:
    """The key as written before execution settings were keyed (copied from the previous run_key)."""
    blob = json.dumps({"dataset": dataset, "source": source, "model": model, "hparams": hparams, "train": asdict(cfg),
                       "split": int(s), "init": int(i)}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:20]


def test_default_settings_keep_the_old_keys_and_other_settings_change_them():
    spec = RunSpec("g", "src", "coin", {"a": 1}, CFG)
    assert spec.settings() == {}
    assert run_key("g", "src", "coin", {"a": 1}, CFG, 2, 3, spec.settings()) == _old_key("g", "src", "coin", {"a": 1},
                                                                                        CFG, 2, 3)
    others = [RunSpec("g", "src", "coin", {"a": 1}, CFG, threads=2), RunSpec("g", "src", "coin", {"a": 1}, CFG,
              fast=False), RunSpec("g", "src", "coin", {"a": 1}, CFG, device="cuda:1"),
              RunSpec("g", "src", "coin", {"a": 1}, CFG, dtype="float64")]
    keys = {run_key("g", "src", "coin", {"a": 1}, CFG, 2, 3, o.settings()) for o in others}
    assert len(keys) == 4 and _old_key("g", "src", "coin", {"a": 1}, CFG, 2, 3) not in keys
    assert RunSpec("g", "src", "coin", {}, CFG, device="cuda:0").settings() == {"device": "cuda"}  # any GPU index


@pytest.mark.filterwarnings("ignore::nsde_coin.graph.diffusion.PositivityWarning")
def test_a_file_written_under_one_setting_is_not_resumed_under_another(tmp_path):
    data, out = _sbm(), tmp_path / "runs.jsonl"
    a = run_protocol(data, "coin", HP, splits=1, inits=2, out=out, config=CFG, progress=False)
    rec = json.loads(out.read_text().splitlines()[0])
    assert rec["threads"] == 1 and rec["fast"] is True
    assert rec["key"] == _old_key(data.name, _src(data), "coin", a["hparams"], CFG, 0, 0)
    # used to be "complete" (new_runs 0) and silently mixed the settings
    assert run_protocol(data, "coin", HP, splits=1, inits=2, out=out, config=CFG, progress=False,
                        threads=2)["new_runs"] == 2
    assert run_protocol(data, "coin", HP, splits=1, inits=2, out=out, config=CFG, progress=False,
                        fast=False)["new_runs"] == 2
    assert run_protocol(data, "coin", HP, splits=1, inits=2, out=out, config=CFG, progress=False)["new_runs"] == 0


def _src(data) -> str:
    from nsde_coin.graph.experiment.runner import _fingerprint

    return f"arrays:{_fingerprint(data)}"


def test_the_lock_refuses_a_second_holder_and_frees_on_exit(tmp_path):
    out = tmp_path / "r.jsonl"
    with SweepLock(out):
        with pytest.raises(ResultsInUseError, match=r"driver PID \d+ on host"):
            with SweepLock(out):  # another open file description: flock conflicts even within one process
                pass
    with SweepLock(out):  # released
        pass
    with SweepLock(None):  # in memory: nothing to lock
        pass


def test_cli_engine_errors_are_one_line(capsys):
    assert main(["graph", "--dataset", "cora", "--shard", "0/2"]) == 2
    assert "--shard 0/2 was removed" in capsys.readouterr().err
    assert main(["graph", "--dataset", "cora", "--workers", "0"]) == 2
    assert "--workers 0 is not valid" in capsys.readouterr().err
    assert main(["graph", "--dataset", "cora", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert "not both" in capsys.readouterr().err
