"""Protocol runs: resumable JSONL records, corrupt lines, the COIN read-out shortcut, the CLI, the headline effect."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from problems import needs_data, sbm_graph

from nsde_coin.cli import main
from nsde_coin.graph import datasets as ds
from nsde_coin.graph.baselines import build_model
from nsde_coin.graph.protocol import TrainConfig, _ModuleTask, _ReadoutCOINTask, run_protocol, train_run
from nsde_coin.graph.splits import random_split

_sbm = sbm_graph  # the protocol tests' small graph (tests/problems.py)


CFG = TrainConfig(max_epochs=60, patience=10)


def test_resume_skips_finished_runs_and_reports_corrupt_lines(tmp_path):
    data = _sbm()
    out = tmp_path / "runs.jsonl"
    s1 = run_protocol(data, "mlp", splits=2, inits=2, out=out, config=CFG, progress=False)
    assert s1["runs"] == 4 and s1["new_runs"] == 4 and s1["failed"] == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 4
    rec = json.loads(lines[0])
    for key in ("dataset", "model", "hparams", "split_seed", "init_seed", "epochs", "best_epoch", "val_acc",
                "test_acc", "wall_time_s", "epoch_time_ms", "torch", "lr", "patience"):
        assert key in rec
    s2 = run_protocol(data, "mlp", splits=2, inits=2, out=out, config=CFG, progress=False)
    assert s2["new_runs"] == 0 and s2["test_acc_mean"] == pytest.approx(s1["test_acc_mean"])
    # corrupt line 2 and leave a half-written last line (a killed writer)
    lines[1] = "{not json"
    out.write_text("\n".join(lines[:3]) + "\n" + lines[3][: len(lines[3]) // 2])
    with pytest.warns(RuntimeWarning, match=r"corrupt line\(s\) \(line 2, 4\); kept 2 good record"):
        s3 = run_protocol(data, "mlp", splits=2, inits=2, out=out, config=CFG, progress=False)
    assert s3["new_runs"] == 2 and s3["runs"] == 4 and s3["corrupt_lines"] == [2, 4]
    assert s3["test_acc_mean"] == pytest.approx(s1["test_acc_mean"])  # redone runs are bit-identical on CPU
    # new records start on a fresh line after the partial one
    text = out.read_text().splitlines()
    assert sum(1 for ln in text if ln.startswith('{"')) == 5
    # another hyper-parameter is another run
    with pytest.warns(RuntimeWarning, match=r"\(line 2, 4\); kept 4 good record"):  # still reported, never fatal
        s4 = run_protocol(data, "mlp", {"hidden": 16}, splits=1, inits=1, out=out, config=CFG, progress=False)
    assert s4["new_runs"] == 1


def test_resume_key_tells_apart_two_graphs_built_from_arrays_with_the_same_name(tmp_path):
    out = tmp_path / "runs.jsonl"
    a, b = _sbm(seed=0), _sbm(seed=1)
    assert a.name == b.name == "sbm"
    sa = run_protocol(a, "mlp", splits=1, inits=1, out=out, config=CFG, progress=False)
    sb = run_protocol(b, "mlp", splits=1, inits=1, out=out, config=CFG, progress=False)
    assert sb["new_runs"] == 1  # used to be 0: graph b was "resumed" from graph a's record
    assert run_protocol(a, "mlp", splits=1, inits=1, out=out, config=CFG, progress=False)["new_runs"] == 0
    recs = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert len(recs) == 2 and recs[0]["key"] != recs[1]["key"] and sa["runs"] == sb["runs"] == 1


def test_numpy_scalar_hparams_are_recorded_as_python_numbers(tmp_path):
    out = tmp_path / "runs.jsonl"
    # used to fail: np.int64 layer_num was rejected as "not an int", np.float32 sigma2 broke json.dumps of the record
    hp = {"layer_num": np.int64(2), "sigma2": np.float32(0.25)}
    s1 = run_protocol(_sbm(), "coin", hp, splits=1, inits=1, out=out, config=CFG, progress=False)
    rec = json.loads(out.read_text())
    assert rec["hparams"]["layer_num"] == 2 and rec["hparams"]["sigma2"] == pytest.approx(0.25)
    s2 = run_protocol(_sbm(), "coin", {"layer_num": 2, "sigma2": 0.25}, splits=1, inits=1, out=out, config=CFG,
                      progress=False)
    assert s1["new_runs"] == 1 and s2["new_runs"] == 0  # same run, same key


def test_unknown_model_and_bad_hparams():
    data = _sbm()
    with pytest.raises(ValueError, match="unknown model 'gnn'; valid models: coin, coin_base, mlp, gcn"):
        run_protocol(data, "gnn", splits=1, inits=1, progress=False)
    with pytest.raises(ValueError, match="unknown hyper-parameter 'depth' for model 'gcn'; valid: hidden, dropout"):
        run_protocol(data, "gcn", {"depth": 3}, splits=1, inits=1, progress=False)
    with pytest.raises(ValueError, match="sigma2 must be > 0"):
        run_protocol(data, "coin", {"sigma2": 0.0}, splits=1, inits=1, progress=False)
    with pytest.raises(ValueError, match="layer_num must be an int >= 0"):
        run_protocol(data, "coin", {"layer_num": -1}, splits=1, inits=1, progress=False)
    with pytest.raises(ValueError, match="sigma2 must be > 0 .*got 'abc'"):  # was "could not convert string..."
        run_protocol(data, "coin", {"sigma2": "abc"}, splits=1, inits=1, progress=False)
    with pytest.raises(ValueError, match="unknown graph solver 'rk4'"):
        run_protocol(data, "coin", {"solver": "rk4"}, splits=1, inits=1, progress=False)
    with pytest.raises(ValueError, match="inits must be an int >= 1, got -1"):  # the message said inits=0
        run_protocol(data, "mlp", splits=1, inits=-1, progress=False)
    with pytest.raises(ValueError, match="splits must be an int >= 1, got -2"):
        run_protocol(data, "mlp", splits=-2, inits=1, progress=False)
    for bad in (0, -1):  # used to reach torch.set_num_threads: RuntimeError traceback (or 0 silently ignored)
        with pytest.raises(ValueError, match=f"threads must be an int >= 1 .*got {bad}"):
            run_protocol(data, "mlp", splits=1, inits=1, threads=bad, progress=False)


@pytest.mark.parametrize("solver, layers, sigma2", [("explicit", 6, 0.2), ("implicit", 4, 0.5), ("explicit", 0, 1.0)])
def test_readout_shortcut_matches_the_full_forward(solver, layers, sigma2):
    data = _sbm()
    split = random_split(data.y, 1)
    net = build_model("coin", data, {"layer_num": layers, "sigma2": sigma2, "solver": solver}, seed=3)
    net.double()
    net.graph_inputs = (net.graph_inputs[0].to(torch.float64), net.graph_inputs[1])
    _same_epoch(_ReadoutCOINTask(net, data.y, split), _ModuleTask(net, data.y, split), rel=1e-6, atol=1e-9)


def _same_epoch(fast, full, rel: float, atol: float) -> None:
    """The shortcut task's training pass gives the full task's loss, validation metrics and gradients."""
    lf, vf = fast.train_forward()
    gf = torch.autograd.grad(lf, fast.params)
    lm, vm = full.train_forward()
    gm = torch.autograd.grad(lm, full.params)
    assert lf.item() == pytest.approx(lm.item(), rel=rel)
    assert vf[0] == pytest.approx(vm[0], rel=10 * rel) and vf[1] == vm[1]
    for a, b in zip(gf, gm):
        torch.testing.assert_close(a, b, rtol=10 * rel, atol=atol * max(1.0, float(b.abs().max())))


@pytest.mark.parametrize("form", ["rows", "steps"])
def test_both_readout_forms_match_the_full_forward_in_float32(form, monkeypatch):
    """The dense read-out rows and the compiled explicit steps followed by the rows give the model's own loss,
    validation metrics and gradients (float32, the protocol's dtype); each form is forced once."""
    from nsde_coin.graph import native
    from nsde_coin.graph.experiment import train as train_mod

    if form == "steps" and not native.available():
        pytest.skip(f"the steps form needs the compiled csr_power: {native.status()}")
    if form == "rows":
        monkeypatch.setattr(train_mod, "_steps_are_cheaper", lambda *a, **k: False)
    data = _sbm()
    split = random_split(data.y, 2)
    net = build_model("coin", data, {"layer_num": 8, "sigma2": 0.3, "solver": "explicit"}, seed=1)
    fast = _ReadoutCOINTask(net, data.y, split)
    assert (fast.steps is not None, fast.readout is not None) == (form == "steps", form == "rows")
    _same_epoch(fast, _ModuleTask(net, data.y, split), rel=1e-5, atol=1e-6)


def test_the_steps_form_is_chosen_only_where_it_is_cheaper():
    from nsde_coin.graph import native
    from nsde_coin.graph.experiment.train import _steps_are_cheaper as steps_are_cheaper

    data = _sbm()
    net = build_model("coin", data, {"layer_num": 8, "sigma2": 0.3, "solver": "explicit"}, seed=1)
    op = net._operator(data.edge_index, data.num_nodes)
    n, nnz = op.n, op.step_matrix(0.3, torch.float32, torch.device("cpu")).values().numel()
    rows = -(-8 * nnz // n)  # the least number of rows for which 8 steps are no more work than the dense rows
    cpu, f32 = torch.device("cpu"), torch.float32
    assert steps_are_cheaper(op, "explicit", 8, 0.3, rows, 3, f32, cpu) == native.available()
    assert not steps_are_cheaper(op, "explicit", 8, 0.3, rows - 1, 3, f32, cpu)  # more work than the rows
    assert not steps_are_cheaper(op, "implicit", 8, 0.3, n, 3, f32, cpu)  # only the explicit solver has steps
    assert not steps_are_cheaper(op, "explicit", 8, 0.3, n, 3, torch.float64, cpu)  # the compiled power: float32
    assert not steps_are_cheaper(op, "explicit", 0, 0.3, n, 3, f32, cpu)
    assert not steps_are_cheaper(op, "explicit", 8, 0.3, n, 3, f32, torch.device("meta"))  # not on the CPU


@pytest.mark.parametrize("form", ["rows", "steps"])
def test_both_readout_forms_refuse_a_diffusion_that_overflows(form, monkeypatch):
    """An explicit diffusion far past its stability bound overflows float32: both forms raise the solver's
    NonFiniteError when the run is set up (the steps form did not: it diffused zeros, then recorded a failed run)."""
    from nsde_coin.errors import NonFiniteError
    from nsde_coin.graph import native
    from nsde_coin.graph.experiment import train as train_mod

    if form == "steps" and not native.available():
        pytest.skip(f"the steps form needs the compiled csr_power: {native.status()}")
    if form == "rows":
        monkeypatch.setattr(train_mod, "_steps_are_cheaper", lambda *a, **k: False)
    data = _sbm()
    hp = {"layer_num": 17, "sigma2": 300.0, "solver": "explicit", "allow_unstable": True}
    net = build_model("coin", data, hp, seed=1)
    with pytest.warns(UserWarning), pytest.raises(NonFiniteError):
        _ReadoutCOINTask(net, data.y, random_split(data.y, 0))


@pytest.mark.parametrize("other_rows", ["zero", "nonzero", "nan"])
def test_readout_backward_uses_the_training_rows_only_when_the_others_get_no_gradient(other_rows):
    from nsde_coin.graph.experiment.readout import DenseReadout as _Readout

    gen = torch.Generator().manual_seed(0)
    m, n, c, r = 9, 13, 3, 4
    p = torch.rand(m, n, generator=gen, dtype=torch.float64)
    u = torch.rand(n, c, generator=gen, dtype=torch.float64, requires_grad=True)
    g = torch.randn(m, c, generator=gen, dtype=torch.float64)
    if other_rows == "zero":
        g[r:] = 0.0
    elif other_rows == "nan":
        g[r + 1, 0] = float("nan")
    out = _Readout.apply(u, p, p.t().contiguous(), r)
    assert torch.allclose(out, p @ u, rtol=1e-12, atol=0)
    (gu,) = torch.autograd.grad(out, u, g)
    want = p.t() @ g  # the full product: rows past r must count whenever their gradient is not zero
    assert torch.equal(torch.isnan(gu), torch.isnan(want))
    ok = ~torch.isnan(want)
    assert torch.allclose(gu[ok], want[ok], rtol=1e-12, atol=1e-14)
    if other_rows == "nonzero":  # the training rows alone would give another gradient: the test can fail
        assert not torch.allclose(p[:r].t() @ g[:r], want, rtol=1e-6, atol=0)


def test_hand_written_sparse_base_matches_the_dense_autograd_module():
    data = _sbm()
    net = build_model("coin", data, {"layer_num": 2, "sigma2": 0.2}, seed=0)
    base, x = net.base, net.graph_inputs[0]
    assert x.layout in (torch.sparse_csr, torch.sparse_coo)  # the fast path trains through the sparse kernel
    g = torch.randn(data.num_nodes, 3, generator=torch.Generator().manual_seed(0))
    a = base(x)
    ga = torch.autograd.grad(a, list(base.parameters()), g)
    b = base(x.to_dense())
    gb = torch.autograd.grad(b, list(base.parameters()), g)
    assert torch.allclose(a, b, atol=1e-5)
    for u, v in zip(ga, gb):
        assert torch.allclose(u, v, rtol=1e-4, atol=1e-6)


def test_cli_errors_list_valid_names(capsys):
    assert main(["graph", "--dataset", "karate"]) == 2
    assert "valid names: cora, citeseer" in capsys.readouterr().err
    assert main(["graph", "--dataset", "cora", "--model", "gin"]) == 2
    assert "valid models: coin" in capsys.readouterr().err
    assert main(["graph", "--dataset", "cora", "--solver", "euler"]) == 2
    assert "valid choices: exact, explicit, implicit, random_walk" in capsys.readouterr().err
    assert main(["graph", "--dataset", "cora", "--sigma2", "0"]) == 2
    assert "sigma2 must be > 0" in capsys.readouterr().err


@needs_data
@pytest.mark.data
def test_cli_json_summary_on_cora(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    code = main(["graph", "--dataset", "cora", "--model", "sgc", "--splits", "1", "--inits", "1", "--max-epochs",
                 "30", "--out", str(out), "--json", "--no-progress", "--threads", "1"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["runs"] == 1 and summary["dataset"] == "cora" and summary["model"] == "sgc"
    assert 0 <= summary["test_acc_mean"] <= 100 and len(out.read_text().splitlines()) == 1


@needs_data
@pytest.mark.data
@pytest.mark.filterwarnings("ignore::nsde_coin.graph.diffusion.PositivityWarning")
def test_diffusion_adds_tens_of_points_over_the_base_on_cora():
    """The paper's headline: COIN (layer_num 20, σ² 0.35) beats its layer_num = 0 ablation by >= 10 points.

    Shortened training (patience 20, at most 150 epochs) to fit the test budget; one split, one init each.
    """
    data = ds.load_dataset("cora")
    cfg = TrainConfig(max_epochs=150, patience=20)
    coin = run_protocol(data, "coin", {"allow_unstable": True}, splits=1, inits=1, config=cfg, progress=False)
    base = run_protocol(data, "coin_base", splits=1, inits=1, config=cfg, progress=False)
    assert coin["failed"] == 0 and base["failed"] == 0
    assert 50.0 < base["test_acc_mean"] < 70.0
    assert coin["test_acc_mean"] > 75.0
    assert coin["test_acc_mean"] - base["test_acc_mean"] >= 10.0


def test_workers_write_the_same_records_as_one_process(tmp_path):
    data = _sbm()
    hp = {"layer_num": 5, "sigma2": 0.2}
    one = run_protocol(data, "coin", hp, splits=3, inits=2, out=tmp_path / "one.jsonl", config=CFG, progress=False)
    two = run_protocol(data, "coin", hp, splits=3, inits=2, out=tmp_path / "two.jsonl", config=CFG, progress=False,
                       workers=2)
    assert two["runs"] == two["new_runs"] == 6 and two["failed"] == 0
    recs = {}
    for name in ("one", "two"):
        for line in (tmp_path / f"{name}.jsonl").read_text().splitlines():
            r = json.loads(line)
            recs.setdefault(r["key"], []).append((r["test_acc"], r["val_acc"], r["epochs"]))
    assert len(recs) == 6 and all(len(v) == 2 and v[0] == v[1] for v in recs.values())  # run by run, bit for bit
    assert two["test_acc_mean"] == one["test_acc_mean"]
    # in memory (the driver keeps the returned records) and resuming on a cluster: nothing left to run
    mem = run_protocol(data, "coin", hp, splits=2, inits=1, config=CFG, progress=False, workers=2)
    assert mem["runs"] == 2 and mem["out"] is None
    again = run_protocol(data, "coin", hp, splits=3, inits=2, out=tmp_path / "two.jsonl", config=CFG,
                         progress=False, workers=2)
    assert again["new_runs"] == 0 and again["test_acc_mean"] == one["test_acc_mean"]
    with pytest.raises(ValueError, match="workers must be an int >= 1"):
        run_protocol(data, "coin", hp, splits=1, inits=1, config=CFG, progress=False, workers=0)
    with pytest.raises(ValueError, match="not both"):
        run_protocol(data, "coin", hp, splits=2, inits=1, config=CFG, progress=False, workers=2,
                     client="tcp://127.0.0.1:1")


@pytest.mark.filterwarnings("ignore:explicit step sigma2")  # sigma2 = 1 is past the positivity bound here
def test_resume_key_separates_full_graph_from_its_largest_component_and_int_from_float(tmp_path):
    data = _sbm()
    out = tmp_path / "runs.jsonl"
    a = run_protocol(data, "coin", {"layer_num": 3, "sigma2": 1}, splits=1, inits=1, out=out, config=CFG,
                     progress=False)
    b = run_protocol(data, "coin", {"layer_num": 3, "sigma2": 1.0}, splits=1, inits=1, out=out, config=CFG,
                     progress=False)
    assert a["new_runs"] == 1 and b["new_runs"] == 0 and isinstance(a["hparams"]["sigma2"], float)
    data.lcc = False  # same arrays flagged as the uncut graph: a different experiment, so not resumed
    c = run_protocol(data, "coin", {"layer_num": 3, "sigma2": 1.0}, splits=1, inits=1, out=out, config=CFG,
                     progress=False)
    assert c["new_runs"] == 1


def test_device_choice_is_validated_and_cpu_is_the_default(tmp_path):
    data = _sbm()
    hp = {"layer_num": 5, "sigma2": 0.2}
    a = run_protocol(data, "coin", hp, splits=1, inits=2, out=tmp_path / "a.jsonl", config=CFG, progress=False)
    b = run_protocol(data, "coin", hp, splits=1, inits=2, out=tmp_path / "b.jsonl", config=CFG, progress=False,
                     device="cpu")
    assert a["test_acc_mean"] == b["test_acc_mean"]
    rec = json.loads((tmp_path / "b.jsonl").read_text().splitlines()[0])
    assert rec["device"] == "cpu" and "cuda_peak_mb" not in rec
    with pytest.raises(ValueError, match=r"unknown device 'gpu0'; valid: 'cpu', 'cuda', 'cuda:N'"):
        run_protocol(data, "coin", hp, splits=1, inits=1, config=CFG, progress=False, device="gpu0")
    with pytest.raises(ValueError, match="not supported; valid: 'cpu', 'cuda', 'cuda:N'"):
        run_protocol(data, "coin", hp, splits=1, inits=1, config=CFG, progress=False, device="meta")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available here"):
            run_protocol(data, "coin", hp, splits=1, inits=1, config=CFG, progress=False, device="cuda")


@pytest.mark.parametrize("model, fast", [("coin", True), ("coin", False), ("gcn", True)])
def test_no_weight_copy_gives_the_records_of_the_restored_copy(model, fast):
    """keep_best=False (the sweep's choice) reads the test accuracy off the reset's own forward pass instead of
    restoring a saved copy: same epochs, best epoch and accuracies (read-out COIN, the full COIN forward, and GCN
    whose dropout makes validation a separate eval pass)."""
    data = _sbm()
    split = random_split(data.y, 2)
    hp = {"layer_num": 4, "sigma2": 0.3} if model == "coin" else {}
    cfg = TrainConfig(max_epochs=2000, patience=8)
    runs = []
    for keep in (True, False):
        torch.manual_seed(7)
        net = build_model(model, data, hp, seed=5)
        runs.append(train_run(net, data.y, split, cfg, fast=fast, keep_best=keep))
    kept, seen = runs
    assert kept["readout"] == seen["readout"] == (model == "coin" and fast)
    assert 0 < kept["best_epoch"] < kept["epochs"] - 1  # the last reset is not the last epoch: the copy matters
    for key in ("status", "epochs", "best_epoch", "val_acc", "test_acc"):
        assert seen[key] == kept[key], key
    assert seen["val_loss"] == pytest.approx(kept["val_loss"], rel=1e-4)
