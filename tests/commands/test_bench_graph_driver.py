"""``bench_graph``'s driver hands its workers arguments they parse (the protocol mode passed ``--epochs``, which its
workers refuse, so every worker failed and the script still exited 0); a failed worker makes the exit status
non-zero in both modes, after the outputs are written."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("compare", [False, True])
def test_bench_graph_workers_parse_what_the_driver_passes(bench, compare, monkeypatch, tmp_path):
    # regression: the protocol mode passed "--epochs", which its workers' parser refuses (every worker failed)
    import importlib

    mod = importlib.import_module("bench_graph")
    got = []
    monkeypatch.setattr(mod, "worker", lambda args: got.append(("worker", args.dataset, args.model, args.max_epochs,
                                                                args.splits, args.threads)))
    monkeypatch.setattr(mod, "reference_worker", lambda args: got.append(("reference", args.dataset,
                                                                          args.reference_epochs)))

    def spawn(extra, threads, timeout):  # the worker's own parser, in-process
        mod.main([*extra, "--threads", str(threads)])
        return None  # no result: the driver reports the failure and exits non-zero

    monkeypatch.setattr(mod, "_spawn", spawn)
    if compare:
        import _graph_compare

        monkeypatch.setattr(_graph_compare, "machine_limits", lambda: {"bandwidth_gb_s": 1.0, "peak_gflop_s": 1.0})
    argv = ["--datasets", "cora", "--models", "coin", "--splits", "2", "--inits", "1", "--max-epochs", "7",
            "--reference-epochs", "2", "--out", str(tmp_path / "r.json")] + (["--compare"] if compare else [])
    failure = r"no comparison for cora" if compare else r"no result from 2 worker\(s\): cora coin, cora reference"
    with pytest.raises(SystemExit, match=failure):  # after writing what it has
        mod.main(argv)
    assert (tmp_path / "r.json").exists()
    assert ("worker", "cora", "coin", 7, 2, 1) in got and ("reference", "cora", 2) in got
