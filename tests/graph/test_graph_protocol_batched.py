"""``batch_inits``: a split's inits trained as one COIN ensemble with per-member early stopping."""

from __future__ import annotations

import json

import pytest
import torch
from problems import sbm_graph

from nsde_coin.cli import main
from nsde_coin.graph.baselines import build_model
from nsde_coin.graph.coin import node_nll_loss
from nsde_coin.graph.ensemble import COINEnsemble
from nsde_coin.graph.experiment.batched import _keep_members, train_members
from nsde_coin.graph.protocol import TrainConfig, run_protocol
from nsde_coin.graph.splits import random_split
from nsde_coin.loop import make_optimizer

HP = {"layer_num": 4, "sigma2": 0.3}
CFG = TrainConfig(max_epochs=400, patience=8)


def _records(path) -> dict[tuple[int, int], dict]:
    return {(r["split_seed"], r["init_seed"]): r for r in map(json.loads, path.read_text().splitlines())}


def test_members_stop_apart_and_share_the_batch_time():
    data = sbm_graph()
    split = random_split(data.y, 1)
    batch = train_members([build_model("coin", data, HP, seed=i) for i in range(4)], data.y, split, CFG)
    epochs = [r["epochs"] for r in batch]
    assert len(set(epochs)) > 1, epochs  # the cuts ran
    assert all(r["status"] == "ok" and r["batch"] == 4 and 0 <= r["best_epoch"] < r["epochs"] for r in batch)
    assert sum(r["train_time_s"] for r in batch) == pytest.approx(batch[0]["batch_train_time_s"], rel=1e-3,
                                                                  abs=1e-5)  # the batch's time, by member-epochs


def test_the_cut_keeps_each_members_weights_and_adam_state():
    """Cutting members 1 and 3 out carries members 0 and 2's weights, moments and step count over exactly, and
    their next step is the step the uncut ensemble takes (to float rounding: torch's fused Adam may round a tensor
    of another size differently, so the comparison is not bit for bit)."""
    data = sbm_graph()
    split = random_split(data.y, 1)
    nets = [build_model("coin", data, HP, seed=i) for i in range(4)]
    x, graph = nets[0].graph_inputs

    def step(e, o):
        o.zero_grad(set_to_none=True)
        node_nll_loss(e.log_prob(x), data.y, split.train).sum().backward()
        o.step()

    def trained():  # the ensemble after 3 steps (the same computation each time)
        e = COINEnsemble.from_models(nets)
        e.set_graph(graph, x.shape[0])
        o = make_optimizer(e.parameters(), lr=CFG.lr, weight_decay=CFG.weight_decay, fused=True)
        for _ in range(3):
            step(e, o)
        return e, o

    (ens, opt), (uncut, uncut_opt) = trained(), trained()
    keep = [0, 2]
    old = [(p.detach().clone(), {k: v.clone() for k, v in opt.state[p].items()}) for p in ens.stacked()]
    cut_opt = _keep_members(ens, opt, keep, CFG)
    assert ens.num_models == 2
    for p, (w, state) in zip(ens.stacked(), old):
        assert torch.equal(p.detach(), w[keep])
        new = cut_opt.state[p]
        assert torch.equal(new["exp_avg"], state["exp_avg"][keep])
        assert torch.equal(new["exp_avg_sq"], state["exp_avg_sq"][keep])
        assert float(new["step"]) == float(state["step"]) == 3
    step(ens, cut_opt)
    step(uncut, uncut_opt)
    for p, q in zip(ens.stacked(), uncut.stacked()):
        torch.testing.assert_close(p.detach(), q.detach()[keep], rtol=1e-5, atol=1e-6)


def test_batched_runs_give_the_accuracy_of_separate_runs(tmp_path):
    """The batch's path (full diffusion, torch's fused Adam) and a separate run's (read-out shortcut, Adam inside
    the kernel's backward) agree per step to float rounding, which early stopping can turn into other epochs:
    the records agree in distribution (here: the mean test accuracy of 8 runs), and have keys of their own."""
    data = sbm_graph()
    kw = dict(splits=2, inits=4, config=CFG, progress=False)
    solo = run_protocol(data, "coin", HP, out=tmp_path / "solo.jsonl", **kw)
    batched = run_protocol(data, "coin", HP, out=tmp_path / "batch.jsonl", batch_inits=True, **kw)
    assert batched["runs"] == solo["runs"] == 8 and batched["failed"] == 0
    assert abs(batched["test_acc_mean"] - solo["test_acc_mean"]) < 2.0  # points; both ~97 % here
    a, b = _records(tmp_path / "solo.jsonl"), _records(tmp_path / "batch.jsonl")
    assert set(a) == set(b) and all(a[k]["key"] != b[k]["key"] for k in a)
    assert all(r["readout"] is False and r["batch"] == 4 for r in b.values())


def test_batched_records_resume_under_their_own_key(tmp_path):
    data = sbm_graph()
    out = tmp_path / "runs.jsonl"
    kw = dict(splits=1, inits=3, out=out, config=CFG, progress=False)
    assert run_protocol(data, "coin", HP, batch_inits=True, **kw)["new_runs"] == 3
    again = run_protocol(data, "coin", HP, batch_inits=True, **kw)
    assert again["new_runs"] == 0 and again["runs"] == 3
    assert run_protocol(data, "coin", HP, **kw)["new_runs"] == 3  # separate runs are other records
    assert run_protocol(data, "coin", HP, batch_inits=True, **{**kw, "inits": 4})["new_runs"] == 1  # init 3 alone


def test_a_member_whose_loss_becomes_nonfinite_fails_alone(monkeypatch):
    """From epoch 3 member 1's log-probabilities are -inf (as an overflowing unstable diffusion gives): it is
    recorded as failed at that epoch and cut out; the others train on."""
    data = sbm_graph()
    split = random_split(data.y, 0)
    draw = lambda: [build_model("coin", data, HP, seed=i) for i in range(3)]  # noqa: E731
    clean = train_members(draw(), data.y, split, CFG)
    calls = {"n": 0}
    log_prob = COINEnsemble.log_prob_of_logits

    def poisoned(self, logits, graph=None):
        out = log_prob(self, logits, graph)
        calls["n"] += 1
        if calls["n"] > 3 and self.num_models == 3:  # member 1 is row 1 while all three train
            out = torch.where(torch.arange(3).view(3, 1, 1) == 1, float("-inf"), out)
        return out

    monkeypatch.setattr(COINEnsemble, "log_prob_of_logits", poisoned)
    res = train_members(draw(), data.y, split, CFG)
    assert res[1]["status"] == "nonfinite_loss" and res[1]["epochs"] == 4 and res[1]["test_acc"] is None
    assert res[1]["val_loss"] is None and "member loss inf at epoch 3" in res[1]["message"]
    for i in (0, 2):  # their runs go on (after the cut they equal the clean ones to rounding only, see above)
        assert res[i]["status"] == clean[i]["status"] == "ok" and res[i]["epochs"] > CFG.patience
        assert abs(res[i]["test_acc"] - clean[i]["test_acc"]) <= 0.1


def test_a_member_with_nonfinite_weights_fails_alone():
    """A member whose base output is non-finite (the diffusion refuses such input) is recorded as failed at its
    first epoch; the other members train on."""
    data = sbm_graph()
    split = random_split(data.y, 0)
    nets = [build_model("coin", data, HP, seed=i) for i in range(3)]
    with torch.no_grad():
        nets[1].base.b2.fill_(float("inf"))
    res = train_members(nets, data.y, split, CFG)
    assert res[1]["status"] == "nonfinite_loss" and res[1]["epochs"] == 1 and res[1]["test_acc"] is None
    assert all(res[i]["status"] == "ok" and res[i]["epochs"] > CFG.patience for i in (0, 2))


def test_batch_inits_refuses_other_models_with_the_valid_choice(tmp_path, capsys, monkeypatch):
    with pytest.raises(ValueError, match=r"model 'gcn' cannot: valid models: coin"):
        run_protocol(sbm_graph(), "gcn", splits=1, inits=2, config=CFG, progress=False, batch_inits=True)
    nets = [build_model("mlp", sbm_graph(), seed=0)]
    with pytest.raises(ValueError, match=r"member 0 is a .*: valid models: coin"):
        train_members(nets, sbm_graph().y, random_split(sbm_graph().y, 0), CFG)
    def no_loading(*args, **kwargs):
        raise AssertionError("the CLI loaded the data before refusing the model")

    monkeypatch.setattr("nsde_coin.graph.datasets.load_dataset", no_loading)
    assert main(["graph", "--dataset", "cora", "--model", "gcn", "--batch-inits", "--out",
                 str(tmp_path / "x.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--batch-inits trains" in err[0] and "--model 'gcn' cannot: valid models: coin" in err[0]


def test_no_fast_gives_a_batch_the_same_key(tmp_path):
    """A batch never takes the read-out shortcut, so ``fast=False`` changes nothing there: its runs resume from the
    records written with ``fast=True`` instead of running again under a second key."""
    data = sbm_graph()
    kw = dict(splits=1, inits=2, config=CFG, progress=False, batch_inits=True, out=tmp_path / "r.jsonl")
    first = run_protocol(data, "coin", HP, **kw)
    again = run_protocol(data, "coin", HP, fast=False, **kw)
    assert first["new_runs"] == 2 and again["new_runs"] == 0 and again["runs"] == 2
    assert again["test_acc_mean"] == first["test_acc_mean"]
    assert all(r["fast"] is False and r["readout"] is False for r in _records(tmp_path / "r.jsonl").values())


def test_on_dask_each_split_is_one_task_with_the_in_process_records(tmp_path):
    """Two worker processes of an embedded cluster, one task per split: the records of the in-process batch."""
    data = sbm_graph()
    kw = dict(splits=3, inits=2, config=CFG, progress=False, batch_inits=True)
    one = run_protocol(data, "coin", HP, out=tmp_path / "one.jsonl", **kw)
    two = run_protocol(data, "coin", HP, out=tmp_path / "two.jsonl", workers=2, **kw)
    assert two["runs"] == two["new_runs"] == 6 and two["failed"] == 0
    a, b = _records(tmp_path / "one.jsonl"), _records(tmp_path / "two.jsonl")
    assert set(a) == set(b) and len(a) == 6
    for k in a:
        assert a[k]["key"] == b[k]["key"] and b[k]["batch"] == 2
        for key in ("epochs", "best_epoch", "val_acc", "test_acc"):
            assert a[k][key] == b[k][key], (k, key)
    assert two["test_acc_mean"] == one["test_acc_mean"]
