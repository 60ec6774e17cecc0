"""Label-scarce tabular protocol (nsde_coin.apps.tabular): stratified labelling, metrics, COIN vs its
layer_num = 0 ablation on breast cancer, user CSVs (binary / multiclass) and bad inputs."""

import json

import numpy as np
import pytest
import torch

from nsde_coin.apps.tabular import (
    TabularConfig,
    breast_cancer,
    classification_metrics,
    load_csv,
    run_tabular,
    standardize,
    stratified_labelled,
)
from nsde_coin.cli import main


def test_stratified_labelled_counts():
    y = torch.tensor([0] * 357 + [1] * 212)
    m = stratified_labelled(y, 20, torch.Generator().manual_seed(0))
    assert int(m.sum()) == 20 and int(m[y == 0].sum()) == 13 and int(m[y == 1].sum()) == 7  # 12.5 / 7.5 → 13 / 7
    y3 = torch.tensor([0] * 100 + [1] * 5 + [2] * 3)
    m3 = stratified_labelled(y3, 4, torch.Generator().manual_seed(1))
    assert int(m3.sum()) == 4 and all(int(m3[y3 == c].sum()) >= 1 for c in range(3))
    with pytest.raises(ValueError, match="n_train=2"):
        stratified_labelled(y3, 2, torch.Generator())


def test_standardize_and_metrics():
    x = torch.tensor([[1.0, 5.0], [3.0, 5.0]])
    assert torch.equal(standardize(x), torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))
    y = np.array([0, 1, 1, 0])
    perfect = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.7, 0.3]])
    m = classification_metrics(y, perfect, 2)
    assert m == {"accuracy": 100.0, "roc_auc": 1.0, "aupr": 1.0}
    m3 = classification_metrics(np.array([0, 1, 1]), np.eye(3)[[0, 1, 1]], 3)
    assert m3["accuracy"] == 100.0 and m3["roc_auc"] is None and m3["aupr"] is None  # class 2 absent


def test_coin_beats_ablation_on_breast_cancer():
    """Measured (README, 30 seeds): accuracy 93.57 ± 1.06 vs 92.58 ± 2.34 (paired gain +0.99, SE 0.53), AUPR
    0.978 vs 0.968 (paired gain +0.010, SE 0.0034). The accuracy gain alone is under 2 SE, so the assertions are
    the ones that hold with margin: the AUPR gain exceeds 2 paired SE, the accuracy gain is positive and COIN's
    seed-to-seed spread is below 3/4 of the ablation's (measured: 0.45)."""
    rec = run_tabular(breast_cancer(), TabularConfig(seeds=30))
    coin = np.array([r["aupr"] for r in rec["per_seed"]["coin"]])
    abl = np.array([r["aupr"] for r in rec["per_seed"]["ablation"]])
    d = coin - abl
    assert d.mean() > 2 * d.std(ddof=1) / np.sqrt(len(d)), d
    assert rec["accuracy_gain"]["mean"] > 0
    res = rec["results"]
    assert res["coin"]["accuracy"]["std"] < 0.75 * res["ablation"]["accuracy"]["std"]
    assert rec["stability"]["sigma2_lambda_max"] < 2


def _iris_csv(path):
    from sklearn.datasets import load_iris

    iris = load_iris()
    names = np.array(["setosa", "versicolor", "virginica"])[iris.target]
    lines = ["a,b,species,c,d"] + [f"{r[0]},{r[1]},{s},{r[2]},{r[3]}" for r, s in zip(iris.data, names)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_multiclass_csv_via_cli(tmp_path, capsys):
    path = _iris_csv(tmp_path / "iris.csv")
    data = load_csv(path, "species")
    assert data.x.shape == (150, 4) and data.classes == ["setosa", "versicolor", "virginica"]
    out = tmp_path / "t.json"
    code = main(["tabular", "--csv", str(path), "--label", "species", "--n-train", "9", "--seeds", "3", "--k", "10",
                 "--m", "5", "--epochs", "60", "--no-progress", "--json", "--out", str(out)])
    assert code == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec == json.loads(out.read_text())
    coin = rec["results"]["coin"]
    assert coin["accuracy"]["mean"] > 80.0 and 0.9 < coin["roc_auc"]["mean"] <= 1.0  # macro one-vs-rest


def test_bad_csv_inputs(tmp_path, capsys):
    p = tmp_path / "x.csv"
    p.write_text("f1,f2,y\n1,2,a\n3,oops,b\n")
    with pytest.raises(ValueError, match="column 'f2' holds 'oops'"):
        load_csv(p, "y")
    with pytest.raises(ValueError, match="label column 'label' not found; columns: f1, f2, y"):
        load_csv(p, "label")
    p.write_text("f1,y\n1,a\n2,a\n")
    with pytest.raises(ValueError, match="single class"):
        load_csv(p, "y")
    assert main(["tabular", "--csv", str(p), "--no-progress"]) == 2
    assert "--csv and --label go together" in capsys.readouterr().err


def test_unknown_solver_is_refused_before_any_training():
    """The library calls check the solver name first too (it used to fail inside the first model's training)."""
    data = breast_cancer()
    with pytest.raises(ValueError, match="unknown graph solver 'nope'; valid choices: exact, explicit"):
        run_tabular(data, TabularConfig(seeds=1, epochs=1, solver="nope"))
