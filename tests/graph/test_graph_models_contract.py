"""One contract for every graph model (PyG's): the inputs go to the call, ``log_prob(x, edge_index)`` → (n, C)."""

import math

import pytest
import torch
from problems import sbm_graph

from nsde_coin.errors import NsdeDeprecationWarning
from nsde_coin.graph.baselines import GraphNet
from nsde_coin.graph.coin import COIN
from nsde_coin.graph.models import build_model, graph_inputs, model_names
from nsde_coin.graph.protocol import TrainConfig, train_run
from nsde_coin.graph.splits import random_split


@pytest.mark.parametrize("name", model_names())
def test_every_registered_model_takes_its_inputs_and_gives_log_probabilities(name):
    data = sbm_graph()
    net = build_model(name, data, seed=0).eval()
    x, ei = graph_inputs(name, data)
    assert net.graph_inputs[0] is x and net.graph_inputs[1] is ei  # kept per data set: operators cached once
    with torch.no_grad():
        lp = net.log_prob(x, ei)
    assert lp.shape == (data.num_nodes, int(data.y.max()) + 1)
    # rows are log-probabilities: logsumexp 0 (COIN's diffusion conserves mass; float32 sums: measured < 1e-6)
    assert torch.allclose(lp.logsumexp(1), torch.zeros(data.num_nodes), atol=1e-4)
    if name.startswith("coin"):
        assert type(net) is COIN  # no wrapper: the registry's COIN is COIN
        assert torch.allclose(net(x, ei).log(), lp, atol=1e-5)  # forward = probabilities, as COIN always had


def test_a_model_of_the_old_contract_still_trains_with_a_deprecation_warning():
    data = sbm_graph()
    split = random_split(data.y, 0)
    new = build_model("mlp", data, seed=1)

    class Bound(GraphNet):  # the old contract: bound to its graph, forward() takes nothing
        def __init__(self):
            super().__init__()
            self.inner = new

        def forward(self):
            return self.inner(*new.graph_inputs)

    torch.manual_seed(0)
    with pytest.warns(NsdeDeprecationWarning, match="forward\\(\\) takes no inputs"):
        old = train_run(Bound(), data.y, split, TrainConfig(max_epochs=3))
    assert old["epochs"] == 3 and math.isfinite(old["val_loss"])


def test_the_old_no_argument_call_of_a_registry_baseline_still_works_with_a_deprecation_warning():
    data = sbm_graph()
    net = build_model("gcn", data, seed=0).eval()
    with torch.no_grad():
        new = net.log_prob(*net.graph_inputs)
        with pytest.warns(NsdeDeprecationWarning, match="net\\(\\) without inputs"):
            old = net()
    assert torch.equal(old, new)  # same inputs, same eval-mode computation
