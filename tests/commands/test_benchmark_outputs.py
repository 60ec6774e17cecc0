"""Benchmark scripts check their ``--out`` before measuring (``benchmarks/_report.py``'s ``out_file`` /
``out_folder``): a bad location is one usage line and exit code 2 at once, never minutes of measuring lost to a
failed write at the end. Each script's ``main`` is called in-process with only a bad ``--out``; it must stop in
argument parsing (``SystemExit(2)``) and write nothing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

FILE_OUT = ["bench_coin_epoch", "bench_graph", "bench_laplacian_check", "bench_propagate", "bench_scaling"]
FOLDER_OUT = ["bench_constant_noise", "bench_readme_fk", "bench_sde"]


@pytest.fixture
def script(bench):
    """Import a benchmark script as a module (benchmarks/ on sys.path for the test: the ``bench`` fixture)."""

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"_bench_{name}", bench / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    return load


def _bad_out(mod, out: Path, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        mod.main(["--out", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("usage:"), err  # argparse: the usage (wrapped), then the one error line
    assert sum("error" in line for line in err) == 1 and "error: argument --out" in err[-1], err
    assert str(out) in err[-1], err[-1]
    return err[-1]


@pytest.mark.parametrize("name", FILE_OUT)
def test_a_folder_given_for_the_results_file_fails_before_any_work(name, script, tmp_path, capsys):
    msg = _bad_out(script(name), tmp_path, capsys)
    assert "is a folder" in msg and "give a file name" in msg
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", FILE_OUT[:1] + FOLDER_OUT)
def test_a_path_under_an_existing_file_fails_before_any_work(name, script, tmp_path, capsys):
    blocker = tmp_path / "plain_file"
    blocker.write_text("x")
    msg = _bad_out(script(name), blocker / "sub" / "result.json", capsys)
    assert "is a file" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain_file"] and blocker.read_text() == "x"


@pytest.mark.parametrize("name", FOLDER_OUT)
def test_a_file_given_for_the_results_folder_fails_before_any_work(name, script, tmp_path, capsys):
    f = tmp_path / "results.json"
    f.write_text("old")
    msg = _bad_out(script(name), f, capsys)
    assert "is an existing file" in msg and "give a folder" in msg
    assert f.read_text() == "old"


@pytest.mark.parametrize("compare", [False, True])
def test_bench_graph_checks_its_default_results_file_in_the_driver(compare, script, tmp_path, capsys):
    # the default (results/bench_graph.json, or bench_graph_compare.json with --compare) is checked by the driver
    # only: its --worker children get no --out and must not probe the results folder
    mod = script("bench_graph")
    blocker = tmp_path / "plain_file"
    blocker.write_text("x")
    mod.RESULTS = blocker / "results"
    with pytest.raises(SystemExit) as exc:
        mod.main(["--compare"] if compare else [])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    name = "bench_graph_compare.json" if compare else "bench_graph.json"
    assert "error: argument --out" in err[-1] and name in err[-1] and "is a file" in err[-1], err[-1]
