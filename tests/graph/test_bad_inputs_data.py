"""The fault table, data files and graph operators: each bad input is one clear error (or a documented result).

Rows (issue 9 §2): damaged data files end in ONE ``DataFileError`` line naming the file, what is wrong and how to
restore it (the CLI prints it and exits 2) — never a segfault or a raw traceback; ``diffuse`` refuses matrices that
are not Laplacians (checked once per operator, opt-out ``check_laplacian=False``); ``random_split`` refuses
non-integer float labels. Files are small synthetic files in each loader's format, built in ``tmp_path`` (no
shared data needed).
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from nsde_coin import cli
from nsde_coin.errors import DataFileError
from nsde_coin.graph.coin import COIN
from nsde_coin.graph.diffusion import diffuse
from nsde_coin.graph.laplacian import KINDS, GraphOperator, as_operator, laplacian
from nsde_coin.graph.splits import random_split

REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------- synthetic data files
def _gnn_benchmark_npz(path: Path, **override) -> Path:
    """A 4-node path graph with 3 features in the gnn-benchmark layout of cora.npz (adj_*, attr_*, labels)."""
    arrays = dict(adj_data=np.ones(6, np.float32), adj_indices=np.array([1, 0, 2, 1, 3, 2], np.int32),
                  adj_indptr=np.array([0, 1, 3, 5, 6], np.int32), adj_shape=np.array([4, 4]),
                  attr_data=np.ones(4, np.float32), attr_indices=np.array([0, 1, 2, 0], np.int32),
                  attr_indptr=np.array([0, 1, 2, 3, 4], np.int32), attr_shape=np.array([4, 3]),
                  labels=np.array([0, 1, 0, 1], np.int8))
    arrays.update(override)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def _object(value) -> np.ndarray:
    a = np.empty((), dtype=object)
    a[()] = value
    return a


def _graphgallery_npz(path: Path, adj: sp.csr_matrix | None = None) -> Path:
    """The graphgallery layout of coauthor_cs.npz: 0-d object arrays holding pickled SciPy CSR matrices."""
    if adj is None:
        adj = sp.csr_matrix(np.diag(np.ones(3), 1) + np.diag(np.ones(3), -1))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, adj_matrix=_object(adj), node_attr=_object(sp.csr_matrix(np.eye(4, 3))),
                        node_label=np.array([0, 1, 0, 1]))
    return path


def _truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    os.chmod(path, 0o644)
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _bad_index(key: str):
    def make(tmp: Path) -> tuple[list[str], Path]:
        arr = {"adj_indices": np.array([1, 0, 2, 1, 3, 10**6], np.int32),
               "attr_indices": np.array([0, 1, 2, 10**6], np.int32)}[key]
        f = _gnn_benchmark_npz(tmp / "root" / "npz" / "cora.npz", **{key: arr})
        return ["graph", "--dataset", "cora", "--root", str(tmp / "root")], f
    return make


def _truncated_cora(tmp: Path):
    f = _truncate(_gnn_benchmark_npz(tmp / "root" / "npz" / "cora.npz"))
    return ["graph", "--dataset", "cora", "--root", str(tmp / "root")], f


def _truncated_coauthor(tmp: Path):
    f = _truncate(_graphgallery_npz(tmp / "root" / "graphgallery" / "coauthor_cs.npz"))
    return ["graph", "--dataset", "coauthor_cs", "--root", str(tmp / "root")], f


def _coauthor_bad_index(tmp: Path):
    adj = sp.csr_matrix((np.ones(2), np.array([1, 10**6]), np.array([0, 1, 2, 2, 2])), shape=(4, 4))
    f = _graphgallery_npz(tmp / "root" / "graphgallery" / "coauthor_cs.npz", adj)
    return ["graph", "--dataset", "coauthor_cs", "--root", str(tmp / "root")], f


def _planetoid_raw(raw: Path, prefix: str = "pubmed") -> Path:
    """A 504-node path graph in the Planetoid raw layout (ind.<prefix>.{x,tx,allx,y,ty,ally,graph,test.index})."""
    raw.mkdir(parents=True, exist_ok=True)
    n_all, n_test = 502, 2  # PyG's validation mask needs >= len(y) + 500 non-test nodes
    n = n_all + n_test
    labels = np.eye(2)[np.arange(n) % 2]
    feats = sp.csr_matrix(np.eye(n, 3) + np.eye(n, 3, -1))
    items = {"x": feats[:2], "allx": feats[:n_all], "tx": feats[n_all:], "y": labels[:2], "ally": labels[:n_all],
             "ty": labels[n_all:], "graph": {i: [j for j in (i - 1, i + 1) if 0 <= j < n] for i in range(n)}}
    for name, obj in items.items():
        (raw / f"ind.{prefix}.{name}").write_bytes(pickle.dumps(obj, protocol=2))
    (raw / f"ind.{prefix}.test.index").write_text("".join(f"{i}\n" for i in range(n_all, n)))
    return raw


def _truncated_pubmed_graph(tmp: Path):
    raw = _planetoid_raw(tmp / "root" / "planetoid" / "PubMed" / "raw")
    return ["graph", "--dataset", "pubmed", "--root", str(tmp / "root")], _truncate(raw / "ind.pubmed.graph")


def _corrupt_pubmed_cache_copy(tmp: Path):
    """The original is fine but the cache copy PyG reads is damaged (same size, so it is not copied again)."""
    _planetoid_raw(tmp / "root" / "planetoid" / "PubMed" / "raw")
    bad = _planetoid_raw(tmp / "cache" / "planetoid" / "PubMed" / "raw") / "ind.pubmed.graph"
    data = bytearray(bad.read_bytes())
    data[len(data) // 2:] = b"\xff" * (len(data) - len(data) // 2)
    bad.write_bytes(bytes(data))
    return ["graph", "--dataset", "pubmed", "--root", str(tmp / "root")], bad


def _truncated_features(tmp: Path):
    f = tmp / "feats.npz"
    np.savez(f, features=np.ones((20, 4), np.float32), labels=np.arange(20) % 5)
    return ["fewshot", "--features", str(_truncate(f))], f


def _covid_text(tmp: Path) -> Path:
    f = tmp / "england_covid.json"
    f.write_text(json.dumps({"time_periods": 2, "y": [[1.0, 2.0], [3.0, 4.0]],
                             "edge_mapping": {"edge_index": {"0": [[0, 1]], "1": [[1, 0]]},
                                              "edge_weight": {"0": [1.0], "1": [2.0]}}})[:60])
    return f


def _covid_truncated_checked(tmp: Path):
    f = _covid_text(tmp)
    return ["covid", "--path", str(f)], f


def _covid_truncated_unchecked(tmp: Path):
    f = _covid_text(tmp)
    return ["covid", "--path", str(f), "--no-verify"], f


# (id, build(tmp) -> (argv, damaged file), phrases the one-line message must contain, run in a subprocess?)
FILE_ROWS = [
    ("cora adj_indices out of range", _bad_index("adj_indices"),
     ("adj_indices holds column 1000000, outside [0, 4)", "good copy of https://", "downloaded again"), True),
    ("cora attr_indices out of range", _bad_index("attr_indices"),
     ("attr_indices holds column 1000000, outside [0, 3)", "good copy of https://"), True),
    ("coauthor_cs adj_matrix index out of range", _coauthor_bad_index,
     ("adj_matrix.indices holds column 1000000", "good copy", "--source pyg"), True),
    ("truncated cora.npz", _truncated_cora, ("truncated or corrupt", "BadZipFile", "good copy of https://"), False),
    ("truncated coauthor_cs.npz", _truncated_coauthor, ("truncated or corrupt", "good copy", "--source pyg"), False),
    ("truncated ind.pubmed.graph", _truncated_pubmed_graph,
     ("cannot be read as a Planetoid raw file", "truncated", "good copy of https://"), False),
    ("corrupt cache copy of ind.pubmed.graph", _corrupt_pubmed_cache_copy,
     ("cannot be read as a Planetoid raw file", "so it is copied again from"), False),
    ("truncated fewshot --features npz", _truncated_features,
     ("truncated or corrupt", "numpy.savez(path, features=..., labels=...)"), False),
    ("truncated COVID JSON (sha256 checked)", _covid_truncated_checked,
     ("sha256 is", "truncated or modified", "good copy of https://", "--no-verify"), False),
    ("truncated COVID JSON (--no-verify)", _covid_truncated_unchecked,
     ("is not valid JSON", "good copy of https://"), False),
]


def _cli_in_child(argv: list[str], env: dict[str, str], err_file: Path) -> tuple[int, str]:
    """Run ``nsde-coin ARGV`` in a child process, so that a crash in C code shows as rc 139 (SIGSEGV) instead of
    killing pytest. On POSIX the child is a fork of this process (no second ~5 s torch import); elsewhere a fresh
    interpreter."""
    if not hasattr(os, "fork"):  # pragma: no cover - Windows
        full = {**os.environ, **env, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.run([sys.executable, "-m", "nsde_coin.cli", *argv], capture_output=True, text=True,
                              env=full, timeout=300, cwd=REPO)
        return (proc.returncode if proc.returncode >= 0 else 128 - proc.returncode), proc.stderr
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.environ.update(env)
            sys.stderr = open(err_file, "w")  # noqa: SIM115 (closed by os._exit's flush below)
            code = cli.main(argv)
        except BaseException:  # noqa: BLE001 - report anything as a traceback (rc 1), like a plain run would
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    rc = os.waitstatus_to_exitcode(status)
    return (rc if rc >= 0 else 128 - rc), err_file.read_text() if err_file.exists() else ""  # -11 → 139


@pytest.mark.parametrize("build, phrases, subprocess_run", [pytest.param(b, p, s, id=i) for i, b, p, s in FILE_ROWS])
def test_damaged_data_file_is_one_line_naming_file_problem_and_fix(build, phrases, subprocess_run, tmp_path,
                                                                   monkeypatch, capsys):
    argv, damaged_file = build(tmp_path)
    cache = tmp_path / "cache"
    if subprocess_run:
        rc, err = _cli_in_child(argv, {"NSDE_COIN_CACHE": str(cache)}, tmp_path / "stderr.txt")
    else:
        monkeypatch.setenv("NSDE_COIN_CACHE", str(cache))
        rc = cli.main(argv)
        err = capsys.readouterr().err
    assert rc == 2, f"expected the one-line error exit 2, got rc {rc}: {err[-2000:]}"
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert str(damaged_file) in line, line  # names the file (the damaged one, not just the folder)
    for phrase in phrases:
        assert phrase in line, (phrase, line)


def test_damaged_digits_feature_cache_is_recomputed_not_an_error(tmp_path, monkeypatch):
    from nsde_coin.apps import fewshot_data

    monkeypatch.setattr(fewshot_data, "_MEMO", {})
    first = fewshot_data.digits_features(epochs=2, cache_dir=tmp_path)
    (cache,) = tmp_path.glob("digits_features_*.npz")
    _truncate(cache)
    monkeypatch.setattr(fewshot_data, "_MEMO", {})
    again = fewshot_data.digits_features(epochs=2, cache_dir=tmp_path)
    # same seed, same process: the recomputed features match (float32 training; measured difference 0)
    torch.testing.assert_close(again.features, first.features, rtol=1e-5, atol=1e-6)
    assert again.source == "sklearn digits (backbone trained here)"
    assert fewshot_data.read_npz(cache, "-")["features"].shape == tuple(first.features.shape)  # rewritten


def test_damaged_file_error_type_is_data_file_error(tmp_path):
    from nsde_coin.graph.datasets import load_dataset

    _gnn_benchmark_npz(tmp_path / "npz" / "cora.npz", adj_indptr=np.array([0, 1, 3, 2, 6], np.int32))
    with pytest.raises(DataFileError, match="adj_indptr decreases at row 2"):
        load_dataset("cora", root=tmp_path, cache_dir=tmp_path / "cache")
    assert issubclass(DataFileError, ValueError)


# ---------------------------------------------------------------------------------------------- graph operators
def _rand(n: int = 6) -> torch.Tensor:
    return torch.rand(n, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


# (id, matrix factory, solver, phrase of the error)
OPERATOR_ROWS = [
    ("rand(6,6) dense", _rand, "explicit", "off-diagonal entry"),
    ("rand(6,6) sparse CSR", lambda: _rand().to_sparse_csr(), "explicit", "off-diagonal entry"),
    ("rand(6,6) GraphOperator", lambda: GraphOperator(_rand()), "exact", "off-diagonal entry"),
    ("-I implicit", lambda: -torch.eye(6, dtype=torch.float64), "implicit", "diagonal entry L[0, 0] = -1 < 0"),
    ("-I sparse COO", lambda: (-torch.eye(6, dtype=torch.float64)).to_sparse(), "implicit", "diagonal entry"),
    ("symmetric, zero diagonal", lambda: -(torch.ones(6, 6, dtype=torch.float64) - torch.eye(6, dtype=torch.float64)),
     "implicit", "not positive semi-definite"),
    ("neither symmetric nor zero row sums", lambda: 2 * torch.eye(6, dtype=torch.float64)
     - torch.diag(torch.ones(5, dtype=torch.float64), 1), "implicit", "neither symmetric nor has zero row sums"),
]


@pytest.mark.parametrize("make, solver, phrase", [pytest.param(m, s, p, id=i) for i, m, s, p in OPERATOR_ROWS])
def test_diffuse_refuses_a_matrix_that_is_not_a_laplacian(make, solver, phrase):
    u0 = torch.rand(6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match="not a graph Laplacian") as info:
        diffuse(u0, make(), 0.1, 2, solver=solver)
    msg = str(info.value)
    assert phrase in msg and "check_laplacian=False" in msg and "\n" not in msg, msg


def test_check_laplacian_false_diffuses_a_general_matrix_on_purpose():
    a, u0 = _rand(), torch.rand(6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    out = diffuse(u0, a, 0.1, 2, check_laplacian=False)
    p = torch.eye(6, dtype=torch.float64) - 0.1 * a
    torch.testing.assert_close(out, p @ (p @ u0), rtol=1e-12, atol=1e-12)  # float64: rounding ~1e-16


def test_laplacian_check_runs_once_per_operator_and_every_built_kind_passes(monkeypatch):
    from nsde_coin.graph import laplacian_checks

    calls = []
    real = laplacian_checks._find_problem
    monkeypatch.setattr(laplacian_checks, "_find_problem", lambda op: calls.append(op) or real(op))
    ei = torch.tensor([[0, 1, 1, 2, 2, 3, 3, 0, 0, 2], [1, 0, 2, 1, 3, 2, 0, 3, 2, 0]])
    for kind in KINDS:
        lap = laplacian(ei, 5, kind, dtype=torch.float64)  # node 4 isolated: zero row
        for _ in range(3):  # the same tensor maps back to its operator: checked once
            diffuse(torch.rand(5, dtype=torch.float64), lap, 0.2, 3, solver="implicit")
        assert laplacian_checks.laplacian_problem(as_operator(lap)) is None
    assert len(calls) == len(KINDS)
    calls.clear()
    model = COIN(3, 2, layer_num=4, sigma2=0.2, laplacian_kind="paper", generator=torch.Generator().manual_seed(0))
    x = torch.rand(4, 3, generator=torch.Generator().manual_seed(2))
    model.set_graph(ei, 4)
    for _ in range(5):  # five "epochs" on one graph pay for one check
        model.log_prob(x).sum().backward()
    assert len(calls) == 1


# -------------------------------------------------------------------------------------------------------- splits
@pytest.mark.parametrize("labels, phrase", [
    pytest.param([0.5, 1.7], "y[0] = 0.5", id="0.5, 1.7"),
    pytest.param([0.0, 1.25], "y[1] = 1.25", id="0, 1.25"),
    pytest.param([0.0, float("nan")], "y[1] = nan", id="NaN"),
])
def test_random_split_refuses_non_integer_float_labels(labels, phrase):
    y = torch.tensor(labels * 60, dtype=torch.float32)
    with pytest.raises(ValueError, match="integer class ids") as info:
        random_split(y, 0, train_per_class=2, val_per_class=3)
    assert "float32" in str(info.value) and phrase in str(info.value), str(info.value)
    # the documented rule: whole-number floats are class ids (2.0 is class 2), the same split as integer labels
    ints = torch.tensor([0, 1, 2] * 40)
    a, b = random_split(ints.double(), 3, train_per_class=2, val_per_class=3), random_split(ints, 3, train_per_class=2,
                                                                                            val_per_class=3)
    assert all(torch.equal(p, q) for p, q in ((a.train, b.train), (a.val, b.val), (a.test, b.test)))
