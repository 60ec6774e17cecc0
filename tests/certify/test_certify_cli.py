"""`nsde-coin certify sde|graph` end to end with tiny options: the JSON record, the PNG, one-line errors."""

import json
import math

import pytest
from problems import DATA, needs_data
from scipy.stats import norm

from nsde_coin.cli import main


def test_certify_sde_record_and_png(tmp_path, capsys):
    out = tmp_path / "sde.json"
    rc = main(["certify", "sde", "--dataset", "spirals", "--scale", "0.5", "--n", "100", "--n0", "20",
               "--points", "12", "--epochs", "1", "--no-progress", "--threads", "1", "--out", str(out)])
    assert rc == 0
    rec = json.loads(out.read_text())
    assert set(rec["models"]) == {"sde", "ode", "gaussian_aug"}
    # the largest radius n = 100 paths can certify at alpha = 0.001: s·Φ̄⁻¹(1 − 0.001^{1/100}) ≈ 0.5·1.50 < 1
    assert rec["max_radius"] == pytest.approx(0.5 * norm.isf(-math.expm1(math.log(0.001) / 100)), rel=1e-9)
    for m in rec["models"].values():
        acc = list(m["certified_accuracy"].values())
        assert all(a >= b for a, b in zip(acc, acc[1:]))  # certified accuracy never grows with the radius
        assert acc[-1] == 0.0  # radius 1 > max_radius cannot be certified by any model
        assert 0.0 <= m["abstain"] <= 1.0
    assert (tmp_path / "sde.png").stat().st_size > 1000
    assert "gaussian_aug" in capsys.readouterr().out


@needs_data
def test_certify_graph_record(tmp_path, capsys):
    out = tmp_path / "g.json"
    rc = main(["certify", "graph", "--dataset", "citeseer", "--root", str(DATA), "--solvers", "explicit", "implicit",
               "--k-max", "3", "--max-epochs", "5", "--max-nodes", "40", "--no-progress", "--out", str(out)])
    assert rc == 0
    rec = json.loads(out.read_text())
    assert "not entrywise non-negative" in rec["models"]["explicit"]["refused"]  # 0.3 · 4.16 > 1
    imp, base = rec["models"]["implicit"], rec["models"]["layer_num=0"]
    assert len(imp["certified_accuracy_any"]) == 4
    assert base["certified_accuracy_any"][1] == 0.0  # P = I: changing node i itself breaks every prediction
    assert base["certified_accuracy_others"][3] == base["certified_accuracy_others"][0]  # ... others cannot
    assert "refused (*)" in capsys.readouterr().out


def test_certify_errors(capsys):
    assert main(["certify", "sde", "--dataset", "mnist"]) == 2
    assert "--dataset='mnist' is not valid; valid choices: spirals, digits" in capsys.readouterr().err
    assert main(["certify", "graph", "--dataset", "cora", "--solvers", "random_walk", "--root", "/nonexistent"]) == 2
