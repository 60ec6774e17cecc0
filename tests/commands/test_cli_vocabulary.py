"""One CLI vocabulary: the same idea has the same flag in every sub-command, every option's help shows its default,
old spellings still work (and say which flag replaces them), and the CLI imports only what the command needs."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nsde_coin.cli import build_parser, main
from nsde_coin.commands import COMMANDS

# every parser: the sub-commands, with certify's two targets as their own parsers
PARSERS = ["train", "graph", "fewshot", "covid", "tabular", "certify sde", "certify graph", "solvers"]
APPS = ["train", "graph", "fewshot", "covid", "tabular", "certify sde", "certify graph"]  # all but solvers
COIN = ["graph", "fewshot", "covid", "tabular", "certify graph"]  # the commands with a COIN diffusion

# idea -> (the one flag for it, the parsers that have the idea)
VOCABULARY = {
    "epoch budget (a maximum under early stopping)": ("--epochs", APPS),
    "COIN diffusion steps": ("--layer-num", COIN),
    "COIN diffusion step σ²": ("--sigma2", COIN),
    "explicit step past its stability bound": ("--allow-unstable", ["graph", "fewshot", "covid", "tabular"]),
    "the solver of the model's equation": ("--solver", ["train", "graph", "fewshot", "tabular"]),
    "results file (figure next to it)": ("--out", APPS),
    "print the record as JSON": ("--json", PARSERS),
    "torch CPU threads": ("--threads", APPS),
    "no progress bar": ("--no-progress", APPS),
    "no figure": ("--no-plot", ["train", "certify sde", "certify graph"]),
    "learning rate": ("--lr", ["train", "graph", "fewshot", "covid", "tabular"]),
    "weight decay": ("--weight-decay", ["graph", "covid", "tabular"]),
    "seed": ("--seed", ["train", "fewshot", "covid", "tabular", "certify sde"]),
    "initialisations per split / mask": ("--inits", ["graph", "covid"]),
    "offline data folder": ("--root", ["graph", "certify graph"]),
    "data set name": ("--dataset", ["graph", "certify sde", "certify graph"]),
}
# spellings of those ideas that no parser may show (the first two are the deprecated aliases)
OTHER_SPELLINGS = ["--max-epochs", "--layers", "--num-epochs", "--n-epochs", "--output", "--out-dir", "--outdir",
                   "--num-threads", "--nthreads", "--learning-rate", "--layer", "--data-root", "--seeds-base"]
# command -> (old spelling, new flag, value, the other arguments the command needs)
ALIASES = [
    ("graph", "--max-epochs", "--epochs", "7", ["--dataset", "cora"]),
    ("certify graph", "--max-epochs", "--epochs", "7", []),
    ("covid", "--layers", "--layer-num", "7", []),
]
REQUIRED = {"graph": ["--dataset", "cora"]}


def _parser(command: str) -> argparse.ArgumentParser:
    """The argparse parser of one sub-command ("certify sde": certify's sde target)."""
    parser = build_parser(command.split())
    for word in command.split():
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[word]
    return parser


def _visible(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """option string -> action, for the options ``--help`` shows."""
    return {s: a for a in parser._actions if a.help is not argparse.SUPPRESS for s in a.option_strings}


def _help_blocks(command: str, monkeypatch) -> dict[str, str]:
    """First option string -> the text ``--help`` prints for it (whitespace collapsed), from the rendered help."""
    monkeypatch.setenv("COLUMNS", "400")  # no wrapping inside a number or a path
    blocks: dict[str, list[str]] = {}
    current = None
    for line in _parser(command).format_help().splitlines():
        m = re.match(r"^  (-[^\s,]+)", line)
        if m:
            current = m.group(1)
            blocks[current] = [line]
        elif current and line.startswith("    "):
            blocks[current].append(line)
        else:
            current = None
    return {k: " ".join(" ".join(v).split()) for k, v in blocks.items()}


def _numbers(text: str) -> list[float]:
    return [float(t.replace("_", "")) for t in re.findall(r"(?<![\w.])\d[\d_]*(?:\.\d+)?(?:e[-+]?\d+)?", text)]


@pytest.mark.parametrize("command", PARSERS)
def test_every_option_shows_its_default(command, monkeypatch):
    blocks = _help_blocks(command, monkeypatch)
    checked = 0
    for action in _parser(command)._actions:
        if action.help is argparse.SUPPRESS or not action.option_strings or action.nargs == 0 or action.required:
            continue  # hidden aliases, positionals, flags (default: off) and required options have none to show
        text = blocks[action.option_strings[0]]
        assert "default" in text.lower(), f"{command} {action.option_strings[0]}: no default in {text!r}"
        shown = text[text.lower().index("default"):]
        value = action.default
        if value is None or value == []:
            pass  # resolved later (small mode, the model's own default): the help says it in words
        elif isinstance(value, (int, float)):
            assert any(math.isclose(v, value) for v in _numbers(shown)), (command, action.option_strings, text)
        elif isinstance(value, (list, tuple)):
            assert " ".join(map(str, value)) in shown, (command, action.option_strings, text)
        else:
            assert str(value) in shown, (command, action.option_strings, text)
        checked += 1
    assert checked >= 1  # every parser has an option with a value (solvers: --family)


@pytest.mark.parametrize("command", PARSERS + ["certify"])
def test_descriptions_are_whole_sentences(command):
    description = _parser(command).description
    assert description and description[0].isupper() and description.endswith("."), description
    assert "``" not in description


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS) and "--out FILE is the results file" in " ".join(out.split())


@pytest.mark.parametrize("idea", list(VOCABULARY))
def test_one_flag_per_idea(idea):
    flag, commands = VOCABULARY[idea]
    for command in commands:
        assert flag in _visible(_parser(command)), f"{command} lacks {flag} ({idea})"


@pytest.mark.parametrize("command", PARSERS)
def test_no_other_spelling_is_shown(command, monkeypatch):
    visible = _visible(_parser(command))
    assert not [s for s in OTHER_SPELLINGS if s in visible]
    text = " ".join(_help_blocks(command, monkeypatch))
    assert "--max-epochs" not in text and "--layers " not in text


@pytest.mark.parametrize("command", APPS)
def test_threads_default_to_one_and_out_is_the_results_file(command, monkeypatch):
    words = command.split()
    args = build_parser(words).parse_args([*words, *REQUIRED.get(command, [])])
    assert args.threads == 1
    assert "results file" in _help_blocks(command, monkeypatch)["--out"]


@pytest.mark.parametrize("command, old, new, value, needed", ALIASES)
def test_old_spelling_still_works_and_names_the_new_flag(command, old, new, value, needed, capsys):
    words = command.split()
    parsed_new = build_parser(words).parse_args([*words, *needed, new, value])
    assert capsys.readouterr().err == ""  # the new spelling is silent
    parsed_old = build_parser(words).parse_args([*words, *needed, old, value])
    assert vars(parsed_old) == vars(parsed_new)  # same destination, same type: the command cannot tell them apart
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"nsde-coin {command}: warning: {old} is deprecated, use {new}"), err


def test_graph_old_epochs_spelling_reaches_the_training_config():
    from nsde_coin.commands.graph import _config

    args = build_parser(["graph"]).parse_args(["graph", "--dataset", "cora", "--max-epochs", "7"])
    assert _config(args).max_epochs == 7


def test_command_threads_apply_to_the_command_only(monkeypatch):
    seen = []

    def stop(*_a, **_k):  # the first step of the work: note the thread count, then end the command
        seen.append(torch.get_num_threads())
        raise ValueError("stop here")

    monkeypatch.setattr("nsde_coin.apps.tabular.breast_cancer", stop)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        assert main(["tabular", "--no-progress"]) == 2
        assert seen == [1]  # --threads defaults to 1 ...
        assert torch.get_num_threads() == 3  # ... and the caller's setting is back afterwards
    finally:
        torch.set_num_threads(before)


def test_train_out_file_puts_the_figure_next_to_it(tmp_path, monkeypatch):
    from nsde_coin._files import atomic_write

    def fake_plot(models, data, path, **_k):  # where the figure goes, without drawing it (matplotlib is slow)
        return atomic_write(path, b"\x89PNG\r\n\x1a\n")

    monkeypatch.setattr("nsde_coin.plotting.plot_decision_regions", fake_plot)
    out = tmp_path / "runs" / "spirals.json"
    rc = main(["train", "--n", "120", "--epochs", "1", "--models", "base", "--no-progress", "--out", str(out),
               "--json"])
    assert rc == 0
    saved = json.loads(out.read_text())
    assert saved["json"] == str(out) and saved["plot"] == str(out.with_suffix(".png"))
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["spirals.json", "spirals.png"]


def test_help_and_solvers_import_neither_the_apps_nor_pyg():
    # one fresh interpreter: the library's job imports no CLI, graph or app module; `nsde-coin --help` and
    # `nsde-coin solvers` import no app and no PyTorch Geometric; `covid`'s parser does import its app (the control)
    code = (
        "import json, sys, contextlib, io\n"
        "seen = lambda *p: sorted(m for m in sys.modules if m.startswith(p))\n"
        "import nsde_coin.job, nsde_coin.machine\n"
        "nsde_coin.job.resolve_config({})\n"
        "layers = seen('nsde_coin.cli', 'nsde_coin.commands', 'nsde_coin.graph', 'nsde_coin.apps')\n"
        "from nsde_coin.cli import build_parser, main\n"
        "heavy = lambda: seen('nsde_coin.apps', 'torch_geometric')\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "    after_help = heavy()\n"
        "    assert main(['solvers']) == 0\n"
        "    after_solvers = heavy()\n"
        "    build_parser(['covid'])\n"
        "print(json.dumps([layers, after_help, after_solvers, heavy()]))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                        os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    layers, after_help, after_solvers, after_covid = json.loads(res.stdout.strip().splitlines()[-1])
    assert layers == [] and after_help == [] and after_solvers == []
    assert "nsde_coin.apps.covid" in after_covid  # the check sees an app module when one is imported


def test_train_defaults_are_the_jobs_defaults():
    from nsde_coin.commands.train import resolve
    from nsde_coin.job import TRAIN_DEFAULTS, resolve_config

    cli = resolve(build_parser(["train"]).parse_args(["train"]))
    assert cli == resolve_config({})  # one set of defaults: what `nsde-coin train` runs is the library's default job
    assert set(cli) == set(TRAIN_DEFAULTS) | {"small"}
    with pytest.raises(ValueError, match="'layer_num' is not valid; valid choices: T, adjoint_method"):
        resolve_config({"layer_num": 3})
