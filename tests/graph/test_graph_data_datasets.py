"""Real graph data sets: the paper's preprocessing on the shared offline copies (counts, features, safety)."""

from __future__ import annotations

import io
import pickle
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from problems import DATA, needs_data

from nsde_coin.graph.datasets import graph_stats, load_dataset, load_pickled_npz, preprocess, validate_graph


def _is_connected(edge_index: torch.Tensor, n: int) -> bool:
    from scipy.sparse.csgraph import connected_components

    ei = edge_index.numpy()
    a = sp.csr_matrix((np.ones(ei.shape[1]), (ei[0], ei[1])), shape=(n, n))
    return connected_components(a, directed=False)[0] == 1


def _check_protocol_invariants(d) -> None:
    ei = d.edge_index
    assert bool((ei[0] != ei[1]).all()), "self-loops must be dropped"
    fwd = set(map(tuple, ei.t().tolist()))
    assert all((j, i) in fwd for i, j in fwd), "graph must be undirected"
    assert len(fwd) == ei.shape[1], "no duplicate edges"
    x = d.x_csr.to_dense()
    assert torch.equal(x, d.x)
    rows = x.sum(1)
    nz = (x != 0).sum(1)
    assert torch.allclose(rows[nz > 0], torch.ones(int((nz > 0).sum())), atol=1e-6)
    # binarised then row-normalised: every stored value of row i is 1/nnz_i
    expect = torch.where(x != 0, 1.0 / nz.clamp_min(1)[:, None].float(), torch.zeros(()))
    assert torch.allclose(x, expect, atol=1e-7)


@needs_data
@pytest.mark.data
@pytest.mark.parametrize("name, counts", [("cora", (2485, 5069, 1433, 7)), ("citeseer", (2110, 3668, 3703, 6))])
def test_npz_largest_component_matches_the_paper(name, counts, tmp_path):
    d = load_dataset(name, cache_dir=tmp_path)
    s = graph_stats(d)
    assert (s["nodes"], s["edges"], s["features"], s["classes"]) == counts
    assert d.source == "npz" and d.num_classes == counts[3]
    assert _is_connected(d.edge_index, d.num_nodes)
    _check_protocol_invariants(d)


@needs_data
@pytest.mark.data
def test_planetoid_loads_offline_from_a_copy(tmp_path):
    d = load_dataset("cora", source="planetoid", cache_dir=tmp_path)
    assert (d.num_nodes, d.edge_index.shape[1] // 2, d.x.shape[1]) == (2485, 5069, 1433)
    assert (tmp_path / "planetoid" / "Cora" / "processed").is_dir()  # PyG wrote into the copy, not into shared/
    assert not (Path(DATA) / "planetoid" / "Cora" / "processed").exists()
    full = load_dataset("cora", source="planetoid", cache_dir=tmp_path, lcc=False)
    assert (full.num_nodes, full.edge_index.shape[1]) == (2708, 10556)  # PyG's Cora


@needs_data
@pytest.mark.data
def test_amazon_photo_through_the_restricted_unpickler(tmp_path):
    d = load_dataset("amazon_photo", lcc=False, dense=False, cache_dir=tmp_path)
    assert (d.num_nodes, d.x_csr.shape[1], d.num_classes) == (7650, 745, 8)
    assert d.edge_index.shape[1] == 238162  # PyG's Amazon('Photo') edge count (both directions, no self-loops)
    lcc = load_dataset("photo", dense=False, cache_dir=tmp_path)
    assert lcc.num_nodes == 7487 and _is_connected(lcc.edge_index, lcc.num_nodes)


def _npz_with_object(tmp_path: Path, obj) -> Path:
    path = tmp_path / "evil.npz"
    arr = np.empty((), dtype=object)
    arr[()] = obj
    np.savez(path, adj_matrix=arr)
    return path


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_restricted_unpickler_allows_csr_and_refuses_other_globals(tmp_path):
    m = sp.random(5, 4, density=0.5, format="csr", random_state=0)
    got = load_pickled_npz(_npz_with_object(tmp_path, m))["adj_matrix"]
    assert isinstance(got, sp.csr_matrix) and np.allclose(got.toarray(), m.toarray())
    with pytest.raises(pickle.UnpicklingError, match="builtins.print"):
        load_pickled_npz(_npz_with_object(tmp_path, _Evil()))


def test_old_scipy_module_name_is_mapped(tmp_path):
    # graphgallery pickles name the module scipy.sparse.csr; emulate that stream
    m = sp.csr_matrix(np.eye(3))
    raw = pickle.dumps(np.array(m, dtype=object), protocol=3).replace(b"scipy.sparse._csr", b"scipy.sparse.csr")
    from numpy.lib import format as npy_format

    buf = io.BytesIO()
    npy_format.write_array_header_1_0(buf, {"descr": "|O", "fortran_order": False, "shape": ()})
    path = tmp_path / "old.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("adj_matrix.npy", buf.getvalue() + raw)
    got = load_pickled_npz(path)["adj_matrix"]
    assert np.allclose(got.toarray(), np.eye(3))


def test_preprocess_symmetrises_drops_loops_and_cuts_to_lcc():
    # two components: a triangle (0,1,2) with a self-loop and weights, and an edge (3,4)
    adj = sp.csr_matrix(([2.0, 5.0, 1.0, 1.0, 1.0], ([0, 1, 2, 0, 3], [1, 2, 0, 0, 4])), shape=(5, 5))
    feats = np.array([[0, 3, 0], [2, 2, 0], [0, 0, 0], [1, 1, 1], [1, 0, 0]], dtype=float)
    d = preprocess(adj, feats, [0, 1, 1, 0, 1], name="toy")
    assert d.num_nodes == 3 and d.edge_index.shape[1] == 6 and d.num_classes == 2
    assert d.node_map.tolist() == [0, 1, 2]
    assert torch.allclose(d.x, torch.tensor([[0, 1, 0], [0.5, 0.5, 0], [0, 0, 0]]))


def test_bad_inputs_name_the_problem(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="unknown dataset 'cora2'.*cora, citeseer, pubmed"):
        load_dataset("cora2")
    with pytest.raises(ValueError, match="non-finite"):
        preprocess(sp.eye(2), np.array([[np.nan, 1.0], [1.0, 0.0]]), [0, 1])
    d = preprocess(sp.csr_matrix(np.ones((3, 3))), np.eye(3), [0, 1, 2])
    d.edge_index = torch.tensor([[0, 1], [1, 7]])
    with pytest.raises(ValueError, match=r"outside the valid range \[0, 2\]"):
        validate_graph(d)
    with pytest.raises(ValueError, match="source='planetoid' is not available for pubmed|valid sources"):
        load_dataset("pubmed", source="npz")

    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlretrieve", offline)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"Put the file\(s\) at .*empty/npz/cora.npz"):
        load_dataset("cora", root=empty, cache_dir=tmp_path / "cache")
