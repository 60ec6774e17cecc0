"""The fault table, CLI and output rows (issue 9 §2): each bad input or fault → one clear line, or a correct result;
nothing lost.

Every CLI row runs ``nsde_coin.cli.main([...])`` in-process with tiny settings and checks: the exit code, exactly one
line on stderr (no traceback), and that no partial file is left and the results are where the message says.
"Before any work" is checked by replacing each command's first expensive step (data loading, training) with a
function that raises ``_WorkStarted``: a row that reaches it has done work before the check.

Read-only folders are simulated by refusing file creation inside them (``os.open`` with ``O_CREAT`` and
``os.mkdir`` raise ``PermissionError``): CI runs as root, for whom ``chmod 0o500`` is still writable. A real
``chmod`` row runs too, skipped for root.
"""

from __future__ import annotations

import errno
import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import nn

from nsde_coin.cli import main

# tiny train settings; --json also turns the progress bars off, so stderr holds only the command's own lines
TINY = ["--n", "120", "--epochs", "1", "--steps", "2", "--samples", "2", "--eval-samples", "2", "--no-plot", "--json"]


class _WorkStarted(Exception):
    """Raised by the stand-ins of the commands' expensive steps (not a ValueError: the CLI must not catch it)."""


def _refuse(*_a, **_k):
    raise _WorkStarted("the command started its work before checking its input")


# the first expensive step of every command (data loading or training)
_WORK = ("nsde_coin.commands.train.run_training", "nsde_coin.graph.datasets.load_dataset",
         "nsde_coin.apps.fewshot_data.digits_features", "nsde_coin.apps.fewshot_data.load_features_file",
         "nsde_coin.apps.fewshot.run_fewshot", "nsde_coin.apps.covid_data.load_england_covid",
         "nsde_coin.apps.covid.run_covid", "nsde_coin.apps.tabular.breast_cancer",
         "nsde_coin.apps.tabular.run_tabular")


@pytest.fixture
def no_work(monkeypatch):
    for target in _WORK:
        monkeypatch.setattr(target, _refuse)


def _one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"nsde-coin {command}: error: "), err
    return lines[0]


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _read_only(monkeypatch, folder: Path) -> None:
    """Make ``folder`` refuse new files and folders, for every user (root included)."""
    real_open, real_mkdir = os.open, os.mkdir
    inside = str(folder.resolve())

    def deny(path) -> bool:
        return os.path.abspath(os.fspath(path)).startswith(inside)

    def fake_open(path, flags, *a, **k):
        if flags & os.O_CREAT and deny(path):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_open(path, flags, *a, **k)

    def fake_mkdir(path, *a, **k):
        if deny(path):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_mkdir(path, *a, **k)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)


# ------------------------------------------------------------------------------------------- results lost: --out
COMMANDS = {
    "graph": ["graph", "--dataset", "cora", "--model", "mlp", "--no-progress"],
    "train": ["train", *TINY],
    "fewshot": ["fewshot", "--no-progress"],
    "covid": ["covid", "--no-progress"],
    "tabular": ["tabular", "--no-progress"],
}
FILE_COMMANDS = [c for c in COMMANDS if c != "train"]  # --out is a file; train's is a folder


def _out_case(case: str, tmp_path: Path, command: str, monkeypatch) -> Path:
    name = "res" if command == "train" else "r.json"
    if case == "folder given for a file":
        return tmp_path
    if case == "file given for a folder":
        (tmp_path / "taken").write_text("keep me\n")
        return tmp_path / "taken"
    if case == "under a regular file":
        (tmp_path / "plain").write_text("keep me\n")
        return tmp_path / "plain" / name
    ro = tmp_path / "ro"
    ro.mkdir()
    if case == "read-only folder (chmod)":
        ro.chmod(0o500)
    else:
        _read_only(monkeypatch, ro)
    return ro / "sub" / name


OUT_ROWS = (
    [(c, "folder given for a file", "is a folder") for c in FILE_COMMANDS]
    + [("train", "file given for a folder", "is an existing file")]
    + [(c, "under a regular file", "is a file, so no folder can be created") for c in COMMANDS]
    + [(c, "read-only folder", "cannot write into") for c in COMMANDS]
    + [(c, "read-only folder (chmod)", "cannot write into") for c in ("train", "tabular")]
)


@pytest.mark.parametrize("command, case, words", OUT_ROWS)
def test_bad_out_fails_in_one_line_before_any_work(command, case, words, tmp_path, monkeypatch, capsys, no_work):
    if case.endswith("(chmod)") and os.geteuid() == 0:
        pytest.skip("root writes into a chmod 0o500 folder; the root-proof variant is the 'read-only folder' row")
    out = _out_case(case, tmp_path, command, monkeypatch)
    before = _listing(tmp_path)
    try:
        assert main([*COMMANDS[command], "--out", str(out)]) == 2
    finally:
        if case.endswith("(chmod)"):
            (tmp_path / "ro").chmod(0o700)
    line = _one_error_line(capsys, command)
    assert "--out" in line and words in line and str(out) in line
    assert _listing(tmp_path) == before  # the check creates nothing (no probe file, no folder)
    for name in ("taken", "plain"):
        if (tmp_path / name).exists():
            assert (tmp_path / name).read_text() == "keep me\n"  # an existing file is never overwritten


@pytest.mark.parametrize("command", list(COMMANDS))
def test_good_out_passes_the_check_and_creates_nothing_before_the_work(command, tmp_path, no_work):
    out = tmp_path / "new" / ("res" if command == "train" else "r.json")
    with pytest.raises(_WorkStarted):
        main([*COMMANDS[command], "--out", str(out)])
    assert _listing(tmp_path) == []


def test_graph_out_that_cannot_be_appended_to_fails_before_any_work(tmp_path, monkeypatch, capsys, no_work):
    out = tmp_path / "runs.jsonl"
    out.write_text("")
    real_open = open

    def fake_open(path, mode="r", *a, **k):  # a read-only file, for root too
        if os.fspath(path) == str(out) and any(m in mode for m in "aw+"):
            raise PermissionError(errno.EACCES, "Permission denied", str(out))
        return real_open(path, mode, *a, **k)

    monkeypatch.setattr("builtins.open", fake_open)
    assert main([*COMMANDS["graph"], "--out", str(out)]) == 2
    line = _one_error_line(capsys, "graph")
    assert "cannot be appended to" in line and "PermissionError" in line


def test_read_only_existing_result_file_is_not_replaced(tmp_path, monkeypatch, capsys, no_work):
    out = tmp_path / "r.json"
    out.write_text("keep me\n")
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if os.fspath(p) == str(out) else real(p, mode, **k))
    assert main([*COMMANDS["tabular"], "--out", str(out)]) == 2
    assert "the file is read-only" in _one_error_line(capsys, "tabular") and out.read_text() == "keep me\n"


# ---------------------------------------------------------------------- results lost: atomic writes and the fallback
def test_atomic_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    from nsde_coin._files import atomic_write

    target = tmp_path / "r.json"
    target.write_text("old\n")

    def half_then_fail(fh):
        fh.write(b'{"half": ')
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(target, half_then_fail)
    assert target.read_text() == "old\n" and _listing(tmp_path) == ["r.json"]
    atomic_write(target, "new\n")
    assert target.read_text() == "new\n" and _listing(tmp_path) == ["r.json"]


def _replace_fails_into(monkeypatch, folder: Path) -> None:
    """The final rename into ``folder`` fails (disk full at the last moment), everywhere else it works."""
    real = os.replace

    def fake_replace(src, dst, *a, **k):
        if Path(dst).resolve().parent == folder.resolve():
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", fake_replace)


@pytest.fixture
def rescue(tmp_path, monkeypatch):
    folder = tmp_path / "rescue"
    folder.mkdir()
    monkeypatch.setattr("nsde_coin._files._RESCUE", [folder])
    return folder


def _rescued(err: str, command: str) -> list[Path]:
    """The fallback files named by the stderr lines (one line per file, each saying where it went)."""
    assert "Traceback" not in err
    paths = []
    for line in err.strip().splitlines():
        assert line.startswith(f"nsde-coin {command}: warning: could not write ") and "No space left" in line, err
        paths.append(Path(line.split("; the result was saved to ")[1].removesuffix(" instead")))
    return paths


@pytest.mark.parametrize("plot", [False, True], ids=["json", "json+png"])
def test_train_result_whose_final_write_fails_is_saved_to_the_fallback_folder(plot, tmp_path, monkeypatch, capsys,
                                                                               rescue):
    out = tmp_path / "res"
    _replace_fails_into(monkeypatch, out)
    argv = ["train", *TINY, "--models", "base", "--out", str(out)]
    if plot:
        argv.remove("--no-plot")
    assert main(argv) == 1  # the result is safe, but not where asked
    cap = capsys.readouterr()
    assert json.loads(cap.out)["json"] == str(rescue / "train.json")  # what is printed names where the result is
    paths = _rescued(cap.err, "train")
    names = ["train.json", "decision_regions.png"] if plot else ["train.json"]
    assert sorted(p.name for p in paths) == sorted(names) and all(p.parent == rescue for p in paths)
    saved = json.loads((rescue / "train.json").read_text())
    assert saved["json"] == str(rescue / "train.json") and saved["models"][0]["model"] == "base"
    if plot:
        assert saved["plot"] == str(rescue / "decision_regions.png")
        assert (rescue / "decision_regions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _listing(out) == []  # no partial file, no temporary left in --out


def test_record_whose_final_write_fails_is_saved_to_the_fallback_folder(tmp_path, monkeypatch, capsys, rescue):
    # fewshot, covid and tabular write their record through commands.common.emit
    import argparse

    from nsde_coin.commands.common import emit

    out = tmp_path / "deep" / "r.json"
    _replace_fails_into(monkeypatch, out.parent)
    args = argparse.Namespace(out=out, json=False, command="tabular")
    assert emit({"command": "tabular", "accuracy": 0.9}, "the table", args) == 1
    cap = capsys.readouterr()
    assert cap.out == "the table\n"
    (where,) = _rescued(cap.err, "tabular")
    assert where == rescue / "r.json" and json.loads(where.read_text()) == {"command": "tabular", "accuracy": 0.9}
    assert _listing(out.parent) == []


# ---------------------------------------------------------------------------------------------- misleading messages
@pytest.mark.parametrize("model, hparam, named, valid", [
    ("gcn", "hidden=abc", "hidden='abc'", "an int >= 1"),
    ("gcn", "hidden=-4", "hidden=-4", "an int >= 1"),
    ("mlp", "hidden=2.5", "hidden=2.5", "an int >= 1"),
    ("gat", "heads=0", "heads=0", "an int >= 1"),
    ("gcn", "dropout=1.5", "dropout=1.5", "a number in [0, 1)"),
    ("appnp", "alpha=0", "alpha=0", "a number in (0, 1]"),
    ("coin", "allow_unstable=yes", "allow_unstable='yes'", "true or false"),
    ("coin", "laplacian_kind=foo", "laplacian_kind='foo'", "valid choices: paper, sym, rw, comb"),
])
def test_bad_hparam_value_is_one_line_naming_it_before_loading_data(model, hparam, named, valid, capsys, no_work):
    assert main(["graph", "--dataset", "cora", "--model", model, "--hparam", hparam]) == 2
    line = _one_error_line(capsys, "graph")
    assert named in line and valid in line


@pytest.mark.parametrize("command", ["tabular", "fewshot"])
def test_unknown_solver_is_one_line_before_any_work(command, capsys, no_work):
    """Used to fail only inside training, after the progress bar had started."""
    assert main([command, "--solver", "nope"]) == 2
    line = _one_error_line(capsys, command)
    assert "--solver" in line and "'nope'" in line and "exact, explicit, implicit, random_walk" in line


def test_unknown_graph_model_is_named_before_its_flags(capsys, no_work):
    assert main(["graph", "--dataset", "cora", "--model", "foo", "--allow-unstable"]) == 2
    line = _one_error_line(capsys, "graph")
    assert "unknown model 'foo'; valid models: coin, coin_base, mlp" in line and "--allow-unstable" not in line


def _covid_file():
    from nsde_coin.apps.covid_data import locate_covid_file

    return locate_covid_file()


needs_covid = pytest.mark.skipif(_covid_file() is None, reason="England COVID data not found: place "
                                 "england_covid.json in <repo>/../shared/data/covid/ or $NSDE_COIN_DATA/covid/")
COVID = ["covid", "--models", "coin", "--masks", "1", "--inits", "1", "--epochs", "1", "--no-progress"]


@needs_covid
def test_covid_instability_message_recommends_options_covid_accepts(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("nsde_coin.apps.covid._train", _refuse)  # the check comes before any training
    out = tmp_path / "r.json"
    assert main([*COVID, "--sigma2", "5", "--out", str(out)]) == 2
    line = _one_error_line(capsys, "covid")
    assert "sigma2·lambda_max = 16.59 >= 2" in line  # λ_max(L) = 3.3175 on these graphs (printed by the record)
    assert "--allow-unstable" in line and "--sigma2" in line and "solver" not in line  # covid has no --solver
    assert not out.exists()
    with pytest.raises(_WorkStarted):  # ... and the recommended flag is accepted: training starts
        main([*COVID, "--sigma2", "5", "--allow-unstable"])


def _tiny_graph():
    from nsde_coin.graph.datasets import preprocess

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 60)
    a = np.triu(rng.random((180, 180)) < np.where(y[:, None] == y[None, :], 0.08, 0.01), 1)
    a[np.arange(179), np.arange(1, 180)] = True
    x = (rng.random((180, 20)) < 0.1) | (np.arange(20)[None, :] % 3 == y[:, None])
    return preprocess(sp.csr_matrix((a | a.T).astype(float)), x.astype(float), y, name="tiny")


GRAPH_RUN = ["graph", "--dataset", "cora", "--model", "mlp", "--splits", "1", "--inits", "2", "--epochs", "3",
             "--patience", "2", "--no-progress", "--json"]


@pytest.mark.parametrize("damage, says, never", [
    ("junk line appended", "no run was redone: every requested run already has a good record", ["ran ", "were redone"]),
    ("last record truncated", "ran 1 run(s) that had no good record", ["no run was redone", "were redone"]),
])
def test_corrupt_line_warning_says_what_happened(damage, says, never, tmp_path, monkeypatch, capsys, recwarn):
    graph = _tiny_graph()
    monkeypatch.setattr("nsde_coin.graph.datasets.load_dataset", lambda *a, **k: graph)
    out = tmp_path / "runs.jsonl"
    assert main([*GRAPH_RUN, "--out", str(out)]) == 0
    capsys.readouterr()
    good = out.read_text().splitlines()
    assert len(good) == 2
    if damage == "junk line appended":
        out.write_text("\n".join(good) + "\n{not json\n")
    else:
        out.write_text(good[0] + "\n" + good[1][: len(good[1]) // 2])
    assert main([*GRAPH_RUN, "--out", str(out)]) == 0
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"warning: {out}: skipped 1 corrupt line(s) (line ")
    assert says in lines[0] and not any(w in lines[0] for w in never)
    assert not [w for w in recwarn if "corrupt line" in str(w.message)]  # said once, not also as a RuntimeWarning
    assert json.loads(cap.out)["runs"] == 2  # both runs have a good record again


# ---------------------------------------------------------------------------------- silent wrong results: train --sigma
@pytest.mark.parametrize("sigma, words", [
    ("1e20", "pure noise"),
    ("1e38", "pure noise"),  # used to end in a FloatingPointError traceback inside the solver
    ("inf", "expected a finite float > 0"),
])
def test_train_sigma_far_above_the_data_scale_is_one_line(sigma, words, tmp_path, capsys):
    out = tmp_path / "res"
    assert main(["train", *TINY, "--models", "sde", "--sigma", sigma, "--out", str(out)]) == 2
    line = _one_error_line(capsys, "train")
    assert f"--sigma={float(sigma):g}" in line and words in line
    if words == "pure noise":  # the reason, with the numbers: σ√T against the data's spread
        # spread = RMS per-coordinate std of x_train = 0.35585 at n = 120, seed 0: 3.5e-4 from a rounding edge, far
        # above any kernel-path difference of the generated data (~1e-7)
        assert "times the data's per-coordinate spread 0.356" in line and "chance (1/3)" in line
    assert not out.exists()


@pytest.mark.parametrize("sigma, warned", [("3", True), ("0.3", False)])
def test_train_sigma_that_drowns_the_data_is_warned_about_in_one_line(sigma, warned, tmp_path, capsys):
    # measured on the default spirals: sigma 3 (8.4x the spread here) trains to chance (0.38), sigma 1 (2.8x) to 0.92;
    # 3 / 0.35585 = 8.4305, 5e-4 from the rounding edge of "8.43"
    out = tmp_path / "res"
    assert main(["train", *TINY, "--models", "sde", "--sigma", sigma, "--out", str(out), "--json"]) == 0
    cap = capsys.readouterr()
    lines = [ln for ln in cap.err.splitlines() if ln.startswith("nsde-coin train: warning: ")]
    saved = json.loads((out / "train.json").read_text())
    if warned:
        assert len(lines) == 1 and "--sigma=3" in lines[0] and "8.43 times the data's per-coordinate spread" in lines[0]
        assert saved["warnings"] == [lines[0].removeprefix("nsde-coin train: warning: ")]
    else:
        assert lines == [] and saved["warnings"] == []
    assert "Traceback" not in cap.err


# ------------------------------------------------------------------------------------ crashes: non-finite values
def test_diverging_train_is_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "res"
    assert main(["train", *TINY, "--models", "ode", "--lr", "1e30", "--epochs", "3", "--out", str(out)]) == 2
    line = _one_error_line(capsys, "train")
    # which check sees the blow-up first depends on the kernel path: the training loss (AVX2: "non-finite training
    # loss nan at epoch 1 ... try a smaller lr") or the ODE solve's state check (generic kernels: "NaN/Inf states")
    assert "non-finite training loss nan at epoch 1" in line or "NaN/Inf" in line
    assert not (out / "train.json").exists()


@pytest.mark.parametrize("lr", ["1e38", "3e38"])
def test_train_lr_whose_first_adam_step_overflows_is_one_line(lr, tmp_path, capsys):
    # Adam's first step is lr / (1 - beta1) = 10 lr: past float32's 3.4e38 torch failed inside step() with
    # "RuntimeError: value cannot be converted to type float without overflow" (a traceback)
    out = tmp_path / "res"
    assert main(["train", *TINY, "--models", "base", "--lr", lr, "--out", str(out)]) == 2
    line = _one_error_line(capsys, "train")
    assert f"lr={float(lr)!r} is not valid" in line and "float32" in line and "use lr < 3.4e+37" in line
    assert not (out / "train.json").exists()


class _NaNProbs(nn.Module):
    def __init__(self, classes: int = 3):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))
        self.classes = classes

    def forward(self, x):
        return torch.full((x.shape[0], self.classes), math.nan) * self.w


def _fit_nan():
    from nsde_coin.training import fit

    fit(_NaNProbs(), torch.zeros(8, 2), torch.zeros(8, dtype=torch.long), epochs=1, batch_size=4, progress=False)


def _plot_nan():
    from nsde_coin.plotting import grid_probabilities
    from nsde_coin.toydata import make_spirals

    grid_probabilities(_NaNProbs(), make_spirals(30, dim=4, seed=0), resolution=4)


def _covid_nan():
    from nsde_coin.apps.covid import CovidConfig, _train

    params = {"w": torch.ones(2, 3, requires_grad=True)}
    ys = {k: torch.zeros(3) for k in ("train", "val", "test")}
    _train(lambda p, split, train, gen: p["w"] * math.nan, params, ys, torch.ones(2, 3), CovidConfig(epochs=2),
           torch.Generator(), lambda: None)


def _tabular_diverges():
    from nsde_coin.apps.tabular import TabularConfig, TabularData, run_tabular

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 30)
    x = rng.normal(size=(60, 4)) + y[:, None]
    data = TabularData(x=torch.tensor(x), y=torch.tensor(y), classes=["a", "b"],
                       feature_names=[f"f{i}" for i in range(4)], source="synthetic")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the PositivityWarning of an explicit step this far past its bound
        run_tabular(data, TabularConfig(n_train=10, seeds=1, k=5, m=3, layer_num=10, sigma2=1e6, epochs=2,
                                        allow_unstable=True))


@pytest.mark.parametrize("where", [_fit_nan, _plot_nan, _covid_nan, _tabular_diverges],
                         ids=["training.fit", "plotting", "apps.covid", "apps.tabular (graph diffusion)"])
def test_non_finite_results_raise_the_one_project_error(where):
    from nsde_coin.errors import NonFiniteError

    with pytest.raises(NonFiniteError, match="non-finite|NaN/Inf"):
        where()


def test_graph_protocol_records_divergence_with_the_same_wording():
    from nsde_coin.graph.baselines import GraphNet
    from nsde_coin.graph.protocol import TrainConfig, train_run
    from nsde_coin.graph.splits import random_split

    class NaNNet(GraphNet):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(()))

        def forward(self, x=None, edge_index=None):
            return torch.full((180, 3), math.nan) * self.w

    y = torch.arange(3).repeat_interleave(60)
    res = train_run(NaNNet(), y, random_split(y, 0, num_classes=3), TrainConfig(max_epochs=5, patience=2),
                    inputs=(None, None))
    assert res["status"] == "nonfinite_loss" and res["test_acc"] is None  # a record: a sweep goes on
    assert res["message"].startswith("non-finite training loss nan at epoch 0")
