"""`nsde-coin train` end to end (small options): the JSON it writes, the PNG, and one-line errors for bad options."""

import json

import pytest

from nsde_coin.cli import main

SMALL = ["--n", "900", "--epochs", "15", "--steps", "5", "--samples", "4", "--eval-samples", "8", "--seed", "0"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    rc = main(["train", *SMALL, "--out", str(out), "--json"])
    assert rc == 0
    return out


def test_json_file_fields(run_dir):
    res = json.loads((run_dir / "train.json").read_text())
    assert res["command"] == "train"
    assert [m["model"] for m in res["models"]] == ["base", "ode", "sde"]
    for m in res["models"]:
        assert 0.0 <= m["test_accuracy"] <= 1.0
        assert m["train_time_s"] > 0
        assert len(m["history"]) == 15
    by = {m["model"]: m for m in res["models"]}
    assert by["sde"]["test_accuracy"] > by["base"]["test_accuracy"] + 0.2
    assert by["ode"]["test_accuracy"] > by["base"]["test_accuracy"] + 0.2
    assert by["sde"]["solver"] == "euler" and by["sde"]["family"] == "sde" and by["sde"]["sde_type"] == "ito"
    assert by["ode"]["solver"] == "euler" and by["ode"]["family"] == "ode"
    assert (by["sde"]["steps"], by["sde"]["samples"], by["sde"]["eval_samples"]) == (5, 4, 8)
    assert by["sde"]["sigma_learned"] > 0 and by["base"]["sigma_learned"] is None
    assert res["data"]["n_train"] + res["data"]["n_test"] == 900
    assert res["config"]["threads"] == 1 and res["environment"]["threads"] == 1


def test_json_flag_prints_the_same_json(run_dir, capsys):
    # the fixture's run printed to the captured stdout of another test; run a tiny one here
    rc = main(["train", "--n", "120", "--epochs", "1", "--steps", "2", "--samples", "2", "--eval-samples", "2",
               "--models", "base", "sde", "--no-plot", "--out", str(run_dir / "tiny"), "--json"])
    out = capsys.readouterr().out
    assert rc == 0
    printed = json.loads(out)
    assert printed == json.loads((run_dir / "tiny" / "train.json").read_text())
    assert [m["model"] for m in printed["models"]] == ["base", "sde"]
    assert printed["plot"] is None


def test_png_is_a_real_picture(run_dir):
    import matplotlib.image as mpimg
    import numpy as np

    path = run_dir / "decision_regions.png"
    assert path.stat().st_size > 20_000
    img = mpimg.imread(path)[..., :3]
    assert img.shape[0] > 300 and img.shape[1] > 3 * img.shape[0] // 2  # three panels side by side
    colours = np.unique((img * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 200  # shaded regions, not a blank canvas
    assert (img.mean(axis=-1) < 0.95).mean() > 0.2  # a good part of the canvas is coloured


def test_table_output(tmp_path, capsys):
    rc = main(["train", "--n", "120", "--epochs", "1", "--steps", "2", "--samples", "2", "--eval-samples", "2",
               "--no-plot", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    lines = out.splitlines()
    assert lines[1].split()[:3] == ["model", "test", "acc"]
    assert [ln.split()[0] for ln in lines[3:6]] == ["base", "ode", "sde"]
    assert "wall time" in lines[6] and (tmp_path / "train.json").exists()


@pytest.mark.parametrize("argv, words", [
    (["--solver", "bogus"], ["bogus", "valid choices", "euler", "milstein", "srk"]),
    (["--solver", "rk4"], ["rk4", "ODE", "SDE solvers", "euler"]),
    (["--ode-solver", "srk"], ["srk", "valid choices", "rk4", "dopri5"]),
    (["--grad-mode", "reversible"], ["reversible", "reversible_heun"]),
    (["--grad-mode", "magic"], ["magic", "backprop, adjoint, reversible"]),
    (["--solver", "srk", "--grad-mode", "adjoint", "--adjoint-method", "srk"], ["adjoint_method='srk'", "milstein"]),
    (["--solver", "euler", "--adjoint-method", "milstein"], ["grad_mode='backprop'"]),
    (["--sde-type", "weird"], ["weird", "ito, stratonovich"]),
    (["--diffusion", "full"], ["full", "diagonal, scalar, state"]),
    (["--sigma", "0"], ["sigma", "--models ode"]),
    (["--steps", "0"], ["--steps=0"]),
])
def test_bad_options_exit_2_naming_choices(argv, words, tmp_path, capsys):
    # tiny sizes so that a case which wrongly passed validation would fail fast, not train for long
    rc = main(["train", *argv, "--n", "120", "--epochs", "1", "--no-plot", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("nsde-coin train: error:") and len(err.strip().splitlines()) == 1
    for w in words:
        assert w in err, (w, err)
    assert not (tmp_path / "train.json").exists()


def test_bad_model_name_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--models", "resnet"])
    assert exc.value.code == 2
    assert "base" in capsys.readouterr().err


def test_failed_plot_closes_its_figure(tmp_path):
    """A model that fails on the plotting grid raises, and the half-drawn figure is closed (no leak)."""
    import matplotlib.pyplot as plt
    import torch

    from nsde_coin.plotting import plot_decision_regions
    from nsde_coin.toydata import make_spirals

    class NaNModel(torch.nn.Module):
        def forward(self, x):
            return torch.full((x.shape[0], 3), float("nan"))

    before = set(plt.get_fignums())
    with pytest.raises(FloatingPointError, match="non-finite"):
        plot_decision_regions({"nan": NaNModel()}, make_spirals(60, seed=0), tmp_path / "x.png", resolution=4)
    assert set(plt.get_fignums()) == before and not (tmp_path / "x.png").exists()
