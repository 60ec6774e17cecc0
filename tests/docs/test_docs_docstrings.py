"""The docs' docstring rule (docs/hooks.py): every public name of nsde_coin has a docstring, and the check can fail."""

import importlib.util
import sys
from pathlib import Path

HOOKS = Path(__file__).resolve().parents[2] / "docs" / "hooks.py"


def _hooks():
    spec = importlib.util.spec_from_file_location("nsde_coin_docs_hooks", HOOKS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_public_name_has_a_docstring():
    assert _hooks().undocumented_public_names("nsde_coin") == []


def test_the_rule_flags_missing_docstrings(tmp_path, monkeypatch):
    pkg = tmp_path / "undocumented_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('"""A package."""\n')
    (pkg / "mod.py").write_text(
        '"""A module."""\n__all__ = ["Thing", "bare", "fine", "LIMIT"]\nLIMIT = 3\n\n'
        "def bare(x):\n    return x\n\n"
        'def fine(x):\n    """Documented."""\n    return x\n\n'
        'class Thing:\n    """Documented class."""\n\n    def method(self):\n        return 1\n\n'
        '    @property\n    def size(self):\n        return 2\n\n'
        '    def __repr__(self):\n        return "Thing()"\n'
    )
    (pkg / "nodoc.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        missing = _hooks().undocumented_public_names("undocumented_pkg")
    finally:
        for name in [m for m in sys.modules if m.startswith("undocumented_pkg")]:
            del sys.modules[name]
    assert missing == ["undocumented_pkg.mod.Thing.method", "undocumented_pkg.mod.Thing.size",
                       "undocumented_pkg.mod.bare", "undocumented_pkg.nodoc"]
