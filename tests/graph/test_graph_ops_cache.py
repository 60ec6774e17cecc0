"""The one graph cache (nsde_coin.graph.cache): entries keyed by owner identity, freed with the owner, shared by
every model on one edge_index, and emptied by clear() (all, or one owner as in GraphDiffusion.reset_parameters)."""

import gc
import weakref

import pytest
import torch
from problems import ring_graph

from nsde_coin.graph import cache
from nsde_coin.graph.coin import COIN
from nsde_coin.graph.laplacian import as_operator, laplacian
from nsde_coin.graph.layers import GraphDiffusion

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta state")
N = 20


def test_entries_are_freed_with_their_owner():
    gc.collect()
    before = cache.owners()
    ei = ring_graph(N, 15, seed=0)
    x = torch.rand(N, 5)
    coin = COIN(5, 3, layer_num=3, sigma2=0.2)
    op = coin._operator(ei, N)
    assert coin._operator(ei, N) is op and cache.lookup(ei, ("operator", N, "paper")) is op
    coin(x, ei)  # the solver's per-operator values (step matrices, warnings) are entries of op
    assert cache.owners() >= before + 2
    ref = weakref.ref(op)
    del op, ei
    gc.collect()
    assert ref() is None  # the edge_index died, so its operator and the operator's own entries went too
    assert cache.owners() == before
    assert cache.lookup(torch.zeros(2, 3, dtype=torch.long), ("operator", N, "paper")) is None  # no entry made


def test_an_owner_dying_after_the_modules_globals_are_gone_reports_nothing(monkeypatch):
    # at interpreter exit a module's globals can be torn down before the last owners die (an owner kept by
    # gc.freeze() printed "AttributeError: 'NoneType' object has no attribute 'get'" at the end of a run)
    reported = []
    monkeypatch.setattr("sys.unraisablehook", reported.append)

    class Owner:
        pass

    owner = Owner()
    cache.entries(owner)["value"] = 1
    store = cache._STORE
    before = len(store)
    monkeypatch.setattr(cache, "_STORE", None)  # what module teardown does to the globals
    monkeypatch.setattr(cache, "_forget", None)
    del owner
    gc.collect()
    assert reported == []
    assert len(store) == before - 1  # the entry still left the store it was made in


def test_models_on_one_edge_index_share_its_operator():
    ei = ring_graph(N, 15, seed=1)
    a, b = COIN(5, 3), COIN(5, 3)  # what build_model does for every run on one data set
    assert a._operator(ei, N) is b._operator(ei, N)
    c = COIN(5, 3, laplacian_kind="sym")
    assert c._operator(ei, N) is not a._operator(ei, N)  # the key includes the Laplacian kind


def test_clear_empties_one_owner_or_everything():
    lap = laplacian(ring_graph(N, 10, seed=2), N)
    op = as_operator(lap)
    layer = GraphDiffusion(0.2, 3)
    u = torch.rand(N, 2)
    layer(u, ring_graph(N, 10, seed=3))
    assert layer.operator is not None and cache.lookup(layer, "operator") is not None
    layer.reset_parameters()  # PyG's contract: reset_parameters forgets the cached graph, here via cache.clear(layer)
    assert layer.operator is None and cache.lookup(layer, "operator") is None
    assert as_operator(lap) is op  # other owners untouched
    cache.clear()
    assert cache.owners() == 0
    assert as_operator(lap) is not op  # rebuilt (and registered again) after clear()
    assert cache.owners() >= 1
