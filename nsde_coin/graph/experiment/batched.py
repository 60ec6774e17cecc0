"""All inits of one split trained at once (``run_protocol(..., batch_inits=True)``, CLI ``--batch-inits``).

The I pending inits of a split become the members of one :class:`~nsde_coin.graph.ensemble.COINEnsemble`: member
i starts from the weights :func:`~nsde_coin.graph.experiment.runner.run_one` would draw for run (s, i)
(``torch.manual_seed(1_000_003·s + i)``, then ``build_model``), and the ensemble trains with the **sum** of the
members' losses, so each member follows its own Adam trajectory (Adam and weight decay act elementwise). One
forward is the base layer of every member (looped, see ``base_logits``), **one** diffusion of the (n, I·C) stacked
probabilities, one loss and one optimiser step for all members: on a GPU, where a lone Cora run is bound by kernel
launches, that is the point; on a CPU the members' base layers cost what I separate runs cost.

Early stopping is per member, as in a separate run (patience on the validation loss or accuracy, read off the
training pass: COIN is deterministic). A member that stops, or whose loss becomes non-finite (recorded as
``nonfinite_loss``), is cut out of the stacked weights and Adam's state after that epoch, so later epochs compute
only the members still training; its record keeps the epoch count, best epoch and scores of its last reset. The
batch ends when every member has stopped or at ``max_epochs``.

Results: each member's step is a separate run's step to float rounding, not bit for bit (the separate run uses the
read-out shortcut and Adam inside the kernel's backward pass; this one the full diffusion and torch's fused Adam),
and early stopping can turn such rounding into a different best epoch (torch's fused Adam also rounds a stacked
tensor of another size differently, so a member's record can depend on which inits share its batch); so batched
records have their own resume key (``batch_inits`` in the run's settings) and agree with separate runs in
distribution, not record by record.
Times in a record are the batch's shared out by member-epochs (``batch_train_time_s``: the whole batch's).
Memory: I times one run's (Cora, I = 20: about 1 GB on CPU; Coauthor Physics would need over 20 GB).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from nsde_coin.graph.splits import Split
from nsde_coin.loop import STOP, Divergence, EarlyStopper, Epoch, make_optimizer, train

__all__ = ["BATCHABLE_MODELS", "check_batchable", "train_members"]

BATCHABLE_MODELS = ("coin",)  # models whose inits can train as one COINEnsemble


def check_batchable(model_name: str, option: str = "batch_inits", model_option: str = "model") -> None:
    """Refuse a model whose inits cannot train as one ensemble, in one line naming the valid choices (``option``
    and ``model_option``: how the caller spells them, e.g. ``--batch-inits`` and ``--model`` on the CLI)."""
    if str(model_name).lower() not in BATCHABLE_MODELS:
        raise ValueError(f"{option} trains the inits of a split as one COIN ensemble; {model_option} "
                         f"{model_name!r} cannot: valid models: {', '.join(BATCHABLE_MODELS)}")


def train_members(nets: list, y: torch.Tensor, split: Split, cfg: Any) -> list[dict[str, Any]]:
    """Train the COINs ``nets`` as one ensemble on ``split`` with per-member early stopping; one result dict per
    member, with the keys of :func:`~nsde_coin.graph.experiment.train.train_run` (``readout`` False) plus
    ``batch`` (I) and ``batch_train_time_s``.

    ``nets``: I COINs with equal settings and ``graph_inputs`` (x (n, d), edge_index), each as drawn for its run;
    their weights are copied into the ensemble, on the device of the graph inputs (the nets are not changed).
    ``y`` (n,) labels, ``cfg`` a :class:`~nsde_coin.graph.experiment.train.TrainConfig`.

    Members that have stopped are cut out of the stacked weights and Adam's state after the epoch they stopped in
    (:func:`_keep_members`), so every epoch computes only the members still training."""
    from nsde_coin.graph.coin import COIN, COINBase, node_nll_loss
    from nsde_coin.graph.ensemble import COINEnsemble
    from nsde_coin.graph.experiment.train import check_split

    for i, net in enumerate(nets):
        if type(net) is not COIN or not isinstance(net.base, COINBase):
            raise ValueError(f"batch_inits trains COINs with the paper's base; member {i} is a "
                             f"{type(net).__name__}: valid models: {', '.join(BATCHABLE_MODELS)}")
    check_split(split)
    t0 = time.perf_counter()
    x, graph = nets[0].graph_inputs
    ens = COINEnsemble.from_models(nets).to(x.device)  # the members' weights stacked, on the graph's device
    ens.set_graph(graph, x.shape[0])
    n_members = len(nets)
    tr, va, te = split.train, split.val, split.test
    yva, yte = y[va], y[te]
    opt = make_optimizer(ens.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    stoppers = [EarlyStopper(cfg.patience) for _ in range(n_members)]
    slots = list(range(n_members))  # slots[j]: the member in row j of the stacked weights
    running = [True] * n_members
    status, message = ["ok"] * n_members, [""] * n_members
    epochs, scores = [0] * n_members, [None] * n_members
    setup_s = time.perf_counter() - t0

    def closure() -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        logits = ens.logits(x)  # (J, n, C)
        bad = ~torch.isfinite(logits.detach()).flatten(1).all(1)  # the diffusion refuses non-finite input
        if bool(bad.any()):  # such a member fails alone: zeros stand in for it, its loss is set to inf below
            logits = torch.where(bad.view(-1, 1, 1), torch.zeros_like(logits), logits)
        lp = ens.log_prob_of_logits(logits)  # the running members' full diffusion on the whole graph
        losses = torch.where(bad, torch.full_like(bad, float("inf"), dtype=lp.dtype), node_nll_loss(lp, y, tr))
        return losses[torch.isfinite(losses.detach())].sum(), (lp.detach(), losses.detach())

    def members_stop(state: Epoch):
        lp, losses = state.aux
        vl, vacc = node_nll_loss(lp, y, va).tolist(), (lp[:, va].argmax(2) == yva).double().mean(1).tolist()
        finite = torch.isfinite(losses).tolist()
        for j, i in enumerate(slots):
            epochs[i] = state.index + 1
            if not finite[j]:
                status[i], running[i] = "nonfinite_loss", False
                message[i] = (f"member loss {float(losses[j])} at epoch {state.index}: run stopped, recorded as "
                              f"failed; explicit diffusion past its stability bound? try a stable solver or a "
                              f"smaller sigma2")
                continue
            if stoppers[i].update(state.index, vl[j], vacc[j]):
                scores[i] = (vl[j], vacc[j], float((lp[j, te].argmax(1) == yte).double().mean()))
            running[i] = not stoppers[i].stop
        return STOP if not any(running[i] for i in slots) else None

    def some_stopped(state: Epoch):
        return STOP if not all(running[i] for i in slots) else None

    divergence = Divergence("batched members: only finite member losses are summed, so this cannot happen", {})
    t1, c1 = time.perf_counter(), time.process_time()
    done = 0
    while done < int(cfg.max_epochs):
        # one segment: until a member stops (its last step is still taken with the others', then it is cut out)
        seg = train(closure, opt, int(cfg.max_epochs) - done, divergence=divergence, on_loss=(members_stop,),
                    on_epoch=(some_stopped,), start=done)
        done += seg.epochs
        keep = [j for j, i in enumerate(slots) if running[i]]
        if not keep or done >= int(cfg.max_epochs):
            break
        opt = _keep_members(ens, opt, keep, cfg)
        slots = [slots[j] for j in keep]
    train_s, cpu_s = time.perf_counter() - t1, time.process_time() - c1
    member_epochs = max(sum(epochs), 1)  # member-epochs computed: the per-epoch times are per member-epoch
    out = []
    for i in range(n_members):
        rec: dict[str, Any] = {
            "status": status[i], "message": message[i], "epochs": epochs[i], "best_epoch": stoppers[i].best_epoch,
            "readout": False, "setup_s": round(setup_s * epochs[i] / member_epochs, 6),
            "train_time_s": round(train_s * epochs[i] / member_epochs, 6),
            "epoch_time_ms": round(1e3 * train_s / member_epochs, 4),
            "train_cpu_s": round(cpu_s * epochs[i] / member_epochs, 6),
            "epoch_cpu_ms": round(1e3 * cpu_s / member_epochs, 4), "batch": n_members,
            "batch_train_time_s": round(train_s, 6)}
        if status[i] == "ok" and scores[i] is None:
            rec.update(status="nonfinite_loss", message="no finite validation metrics were recorded")
        vl, vacc, ta = scores[i] if rec["status"] == "ok" else (None, None, None)
        rec.update(val_loss=vl, val_acc=vacc, test_acc=ta)
        out.append(rec)
    return out


def _keep_members(ens: Any, opt: torch.optim.Optimizer, keep: list[int], cfg: Any) -> torch.optim.Optimizer:
    """Cut ``ens`` down to the members in rows ``keep`` of its stacked weights, with their Adam state; returns the
    optimiser over the new parameters (each kept member's state and step count carried over unchanged)."""
    from nsde_coin.graph.ensemble import _NAMES

    idx = torch.tensor(keep, device=ens.W1.device)
    states = []
    for name, p in zip(_NAMES, ens.stacked()):
        state = opt.state.get(p, {})
        q = torch.nn.Parameter(p.detach().index_select(0, idx))
        setattr(ens, name, q)
        states.append((q, {k: (v.index_select(0, idx) if torch.is_tensor(v) and v.dim() > 0 else
                               v.clone() if torch.is_tensor(v) else v) for k, v in state.items()}))
    ens.num_models = len(keep)
    new = make_optimizer(ens.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    for q, state in states:
        if state:
            new.state[q] = state
    return new
