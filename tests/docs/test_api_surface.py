"""The public surface: core names at the top, nsde_coin.graph and nsde_coin.apps with their own ``__all__``, the old
top-level spellings as deprecated aliases (one warning category, an error under pytest), and no internal use of them.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import nsde_coin
from nsde_coin.errors import NsdeDeprecationWarning, deprecated_alias, deprecated_getattr, warn_deprecated

ROOT = Path(__file__).resolve().parents[2]

# the core modules: every top-level name must be defined in one of them
CORE_MODULES = {"nsde_coin.solvers", "nsde_coin.fields", "nsde_coin.drifts", "nsde_coin.diffusions",
                "nsde_coin.state_diffusion", "nsde_coin.sde", "nsde_coin.brownian", "nsde_coin.integrate",
                "nsde_coin.solve_options", "nsde_coin.model", "nsde_coin.training", "nsde_coin.loop", "nsde_coin.pde",
                "nsde_coin.pde_operator", "nsde_coin.stacked"}

# module → names deprecated there (the old spellings the scan below rejects in our own files)
OLD_NAMES = {
    "nsde_coin": set(nsde_coin.DEPRECATED),
    "nsde_coin.graph": {"nll_loss", "EarlyStopper"},
    "nsde_coin.graph.coin": {"nll_loss"},
    "nsde_coin.solvers": {"validate"},
}


def _home(obj: object) -> str:
    """The module an object is defined in (for constants: the module of the top-level import)."""
    return getattr(obj, "__module__", "") or ""


# ------------------------------------------------------------------------------------------------ the three __all__
def test_top_level_all_is_the_core_only():
    for name in nsde_coin.__all__:
        obj = getattr(nsde_coin, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert _home(obj) in CORE_MODULES, f"nsde_coin.{name} is defined in {_home(obj)}, not in the core"
            assert (obj.__doc__ or "").strip(), f"nsde_coin.{name} has no docstring"
        else:  # constants (GRAD_MODES, ...) come from the solver registry
            assert getattr(importlib.import_module("nsde_coin.solvers"), name) is obj
    assert len(nsde_coin.__all__) == len(set(nsde_coin.__all__))
    assert not set(nsde_coin.__all__) & set(nsde_coin.DEPRECATED)


@pytest.mark.parametrize("package", ["nsde_coin.graph", "nsde_coin.apps"])
def test_subpackage_all_resolves(package):
    mod = importlib.import_module(package)
    assert len(mod.__all__) == len(set(mod.__all__))
    for name in mod.__all__:
        obj = getattr(mod, name)
        assert _home(obj).startswith(package) or not (inspect.isclass(obj) or inspect.isfunction(obj)), (
            f"{package}.{name} is defined in {_home(obj)}, outside {package}")
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert (obj.__doc__ or "").strip(), f"{package}.{name} has no docstring"
    assert set(mod.__all__) <= set(dir(mod))


def test_unknown_attribute_is_an_attribute_error():
    import nsde_coin.apps
    import nsde_coin.graph

    for mod in (nsde_coin, nsde_coin.graph, nsde_coin.apps):
        with pytest.raises(AttributeError, match="no_such_name"):
            mod.no_such_name  # noqa: B018


def test_import_nsde_coin_loads_neither_graph_nor_apps():
    code = ("import sys, nsde_coin, nsde_coin.apps\n"
            "print(sorted(m for m in sys.modules if m.startswith(('nsde_coin.graph', 'nsde_coin.apps.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout  # nsde_coin.apps itself loads no application either


def test_cli_solvers_loads_no_application():
    code = ("import sys\nfrom nsde_coin import cli\ncli.main(['solvers', '--json'])\n"
            "print(sorted(m for m in sys.modules if m.startswith('nsde_coin.apps.')), file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stderr.strip().splitlines()[-1] == "[]", out.stderr
    assert '"random_walk"' in out.stdout  # the graph family is listed (its package loads, the apps do not)


# -------------------------------------------------------------------------------------------- deprecated aliases
@pytest.mark.parametrize("old", sorted(nsde_coin.DEPRECATED))
def test_deprecated_top_level_alias_warns_and_is_the_same_object(old):
    new_module, new_name = nsde_coin.DEPRECATED[old]
    with pytest.warns(NsdeDeprecationWarning, match=rf"nsde_coin\.{old} is deprecated.*use {new_module}\.{new_name}"):
        value = getattr(nsde_coin, old)
    assert value is getattr(importlib.import_module(new_module), new_name)


def test_deprecated_alias_is_an_error_under_pytest():
    """setup.cfg turns our category into an error, so an internal use of an old path fails the suite."""
    with pytest.raises(NsdeDeprecationWarning):
        nsde_coin.COIN  # noqa: B018


def test_from_import_of_an_old_name_warns():
    with pytest.warns(NsdeDeprecationWarning, match="use nsde_coin.graph.diffuse"):
        from nsde_coin import diffuse  # noqa: F401


def test_renamed_functions_warn_and_compute_the_same():
    import torch

    from nsde_coin import solvers
    from nsde_coin.graph import coin, node_nll_loss

    with pytest.warns(NsdeDeprecationWarning, match="use nsde_coin.solvers.check_solver"):
        info = solvers.validate("euler", family="sde", noise_type="diagonal")
    assert info is solvers.check_solver("euler", family="sde", noise_type="diagonal")
    log_u = torch.log_softmax(torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(0)), -1)
    y = torch.tensor([0, 2, 1, 1, 0])
    with pytest.warns(NsdeDeprecationWarning, match="use nsde_coin.graph.node_nll_loss"):
        old = coin.nll_loss(log_u, y)
    assert torch.equal(old, node_nll_loss(log_u, y))
    with pytest.warns(NsdeDeprecationWarning, match=r"nsde_coin\.graph\.nll_loss is deprecated"):
        assert importlib.import_module("nsde_coin.graph").nll_loss is node_nll_loss


def test_deprecation_utilities():
    def f(x: int) -> int:
        """Double."""
        return 2 * x

    g = deprecated_alias(f, "pkg.old", "pkg.f")
    with pytest.warns(NsdeDeprecationWarning) as rec:
        assert g(3) == 6
    assert len(rec) == 1 and rec[0].filename == __file__  # the warning points at the caller's line
    assert "Deprecated alias of :func:`pkg.f`" in g.__doc__ and "Double." in g.__doc__
    getter = deprecated_getattr("pkg", {"old": ("nsde_coin.errors", "warn_deprecated")})
    with pytest.warns(NsdeDeprecationWarning, match="pkg.old is deprecated.*use nsde_coin.errors.warn_deprecated"):
        assert getter("old") is warn_deprecated
    with pytest.raises(AttributeError, match="module 'pkg' has no attribute 'other'"):
        getter("other")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        warn_deprecated("--layers", "--layer-num")
    assert issubclass(rec[0].category, DeprecationWarning)
    assert str(rec[0].message) == ("--layers is deprecated and will be removed in nsde_coin 0.2.0; "
                                   "use --layer-num instead")


# ------------------------------------------------------------------------------- no internal use of an old path
def _sources(path: Path) -> str:
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        return "\n".join("".join(c["source"]) for c in cells)
    return path.read_text(encoding="utf-8")


def old_paths(text: str) -> list[str]:
    """Every use of a deprecated spelling in ``text``: ``module.old`` or ``from module import ..., old, ...``."""
    found = []
    for module, names in OLD_NAMES.items():
        mod = re.escape(module)
        found += [f"{module}.{m}" for m in re.findall(rf"(?<![\w.\"]){mod}\.(\w+)", text) if m in names]
        for group in re.findall(rf"from {mod} import (\([^)]*\)|[^\n]*)", text):
            for item in re.sub(r"#[^\n]*", "", group).strip("()").split(","):
                name = item.split(" as ")[0].strip()
                if name in names:
                    found.append(f"from {module} import {name}")
    return found


def _our_files() -> list[Path]:
    files = [ROOT / "conftest.py"]
    for folder, pattern in (("nsde_coin", "*.py"), ("tests", "*.py"), ("benchmarks", "*.py"), ("scripts", "*"),
                            ("docs", "*.md"), ("notebooks", "*.ipynb")):
        files += [p for p in (ROOT / folder).rglob(pattern) if p.is_file()]
    # they spell old paths on purpose (the API table lists each old spelling with its new path)
    skip = {Path(__file__).resolve(), ROOT / "nsde_coin" / "errors.py", ROOT / "docs" / "api" / "index.md"}
    return sorted(p for p in files if p.resolve() not in skip and ".ipynb_checkpoints" not in p.parts)


def test_the_scan_finds_old_paths():
    text = ("import nsde_coin\nL = nsde_coin.laplacian(e, n)\nfrom nsde_coin import (\n    COIN,  # x\n    fit,\n)\n"
            "from nsde_coin.solvers import validate as v\nnsde_coin.graph.laplacian.laplacian\nnsde_coin.fit\n")
    assert old_paths(text) == ["nsde_coin.laplacian", "from nsde_coin import COIN",
                               "from nsde_coin.solvers import validate"]


def test_no_internal_use_of_an_old_path():
    bad = {str(p.relative_to(ROOT)): hits for p in _our_files() if (hits := old_paths(_sources(p)))}
    assert bad == {}


def _table(path: Path) -> dict[str, dict[str, str]]:
    """The name → module rows of each ``## `package` `` section of a markdown API table."""
    tables: dict[str, dict[str, str]] = {}
    section = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if m := re.match(r"## `([\w.]+)`", line):
            section = tables.setdefault(m.group(1), {})
        elif section is not None and (m := re.match(r"\| `(\w+)` \| `([\w.]+)` \|", line)):
            section[m.group(1)] = m.group(2)
    return tables


def test_api_table_lists_every_public_name_where_it_is_defined():
    doc = "docs/api/index.md"
    tables = _table(ROOT / doc)
    for package in ("nsde_coin", "nsde_coin.graph", "nsde_coin.apps"):
        mod = importlib.import_module(package)
        assert sorted(tables.get(package, {})) == sorted(mod.__all__), f"{doc}: the {package} table != its __all__"
        for name, where in tables[package].items():
            obj = getattr(mod, name)
            assert getattr(importlib.import_module(where), name if name != "GRAPH_MODELS" else "MODELS") is obj, (
                f"{doc}: {package}.{name} is not {where}.{name}")
            if inspect.isclass(obj) or inspect.isfunction(obj):
                assert obj.__module__ == where, f"{doc}: {package}.{name} is defined in {obj.__module__}, not {where}"


@pytest.mark.parametrize("doc", ["docs/concepts/architecture.md", "README.md"])
def test_architecture_table_groups_exactly_the_public_names(doc):
    """The "Public API" tables of the architecture page and the README: rows ``| `package` | `a`, `b` | what |``."""
    text = (ROOT / doc).read_text(encoding="utf-8")
    if "## Public API" not in text:
        pytest.skip(f"{doc} has no 'Public API' section yet (the integrator pastes it from the api branch's report)")
    text = text.split("## Public API", 1)[1]
    listed: dict[str, list[str]] = {}
    for package, names in re.findall(r"^\| `(nsde_coin[\w.]*)` \| (`[^|]*`) \|", text, flags=re.M):
        listed.setdefault(package, []).extend(re.findall(r"`(\w+)`", names))
    for package in ("nsde_coin", "nsde_coin.graph", "nsde_coin.apps"):
        names = listed.get(package, [])
        assert len(names) == len(set(names)) and set(names) == set(importlib.import_module(package).__all__), package


# which layer may import which (docs/concepts/architecture.md, "Which way imports point")
LAYERS = {"core": {"core"}, "demo": {"core", "demo"}, "graph": {"core", "graph"}, "apps": {"core", "graph", "apps"},
          "certify": {"core", "demo", "graph", "certify"},
          "commands": {"core", "demo", "graph", "apps", "certify", "commands"}, "cli": {"core", "commands", "cli"}}


def _layer(module: str) -> str:
    part = module.split(".")[1] if "." in module else "core"
    if part in ("graph", "apps", "certify", "commands", "cli", "demo"):
        return part
    return "demo" if part in ("toydata", "plotting", "notebook", "job") else "core"


def test_imports_point_one_way():
    import ast

    wrong = []
    for path in sorted((ROOT / "nsde_coin").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                if target.startswith("nsde_coin.") and _layer(target) not in LAYERS[_layer(module)]:
                    wrong.append(f"{module} ({_layer(module)}) imports {target} ({_layer(target)})")
    assert wrong == []


def test_readme_uses_no_old_path():
    assert old_paths((ROOT / "README.md").read_text(encoding="utf-8")) == []


def test_every_module_is_under_400_lines():
    """One idea per module: no module of the package grows past ~400 lines (issue 10's rule; the largest was 711)."""
    sizes = {str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines())
             for p in (ROOT / "nsde_coin").rglob("*.py")}
    assert {p: n for p, n in sizes.items() if n > 400} == {}
    assert len(sizes) > 60  # the scan saw the package (it has ~90 modules)
