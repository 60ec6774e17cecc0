"""MkDocs hooks for the nsde_coin site (listed under ``hooks:`` in ``mkdocs.yml``).

* ``on_startup`` — notebooks are executed in small mode (``NSDE_COIN_SMALL=1``, the mode CI tests) with the inline
  matplotlib backend (so their figures are rendered; ``conftest.py`` sets ``Agg`` for pytest, which shows none).
* ``on_page_content`` — Sphinx roles in docstrings (``:func:`x```) are shown as plain code: mkdocstrings does not
  parse reStructuredText roles, and the library's docstrings use a few.
* ``on_config`` — the docstring rule: the build fails when a public name has no docstring (see
  :func:`undocumented_public_names`). ``tests/docs/test_docs_docstrings.py`` checks the same rule under pytest.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import re

_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|attr|data|exc|obj|const):<code>~?([^<]*)</code>")


def _documented(obj: object) -> bool:
    return bool((getattr(obj, "__doc__", None) or "").strip())


def _inherited_doc(cls: type, name: str) -> bool:
    """True when a base class documents ``name`` (an override may then rely on that docstring)."""
    for base in cls.__mro__[1:]:
        member = base.__dict__.get(name)
        if member is not None:
            target = member.fget if isinstance(member, property) else member
            if _documented(target):
                return True
    return False


def undocumented_public_names(package: str = "nsde_coin") -> list[str]:
    """Public names of ``package`` without a docstring, as dotted paths (empty when the rule holds).

    The rule: every module has a docstring; every function and class listed in a module's ``__all__`` has one; and
    every public method or property defined on such a class has one unless a base class documents the same name.
    Constants in ``__all__`` are described in their module's docstring (Python gives them no ``__doc__``).
    """
    root = importlib.import_module(package)
    missing: list[str] = []
    modules = [root] + [importlib.import_module(m.name) for m in pkgutil.walk_packages(root.__path__, package + ".")]
    for mod in modules:
        if not _documented(mod):
            missing.append(mod.__name__)
        for name in getattr(mod, "__all__", ()):
            obj = getattr(mod, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if not _documented(obj):
                missing.append(f"{mod.__name__}.{name}")
            if not inspect.isclass(obj):
                continue
            where = f"{obj.__module__}.{obj.__qualname__}"
            for attr, member in vars(obj).items():
                if attr.startswith("_"):
                    continue
                target = member.fget if isinstance(member, property) else member
                if isinstance(target, (staticmethod, classmethod)):
                    target = target.__func__
                if inspect.isfunction(target) and not _documented(target) and not _inherited_doc(obj, attr):
                    missing.append(f"{where}.{attr}")
    return sorted(set(missing))


def on_startup(command: str, dirty: bool) -> None:  # noqa: ARG001 (mkdocs hook signature)
    """Small-mode notebooks with inline figures for every build."""
    os.environ.setdefault("NSDE_COIN_SMALL", "1")
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"


def on_config(config):  # noqa: ANN001, ANN201 (mkdocs hook signature)
    """Fail the build when a public name lacks a docstring."""
    from mkdocs.exceptions import PluginError

    missing = undocumented_public_names()
    if missing:
        raise PluginError(f"{len(missing)} public name(s) without a docstring: {', '.join(missing)}")
    return config


def on_page_content(html: str, page, config, files) -> str:  # noqa: ANN001, ARG001 (mkdocs hook signature)
    """An unparsed Sphinx role ``:func:<code>~a.b.c</code>`` → ``<code>c</code>`` (without ~: ``a.b.c``)."""

    def plain(match: re.Match) -> str:
        target = match.group(1)
        shown = target.rsplit(".", 1)[-1] if match.group(0).split("<code>", 1)[1].startswith("~") else target
        return f"<code>{shown}</code>"

    return _ROLE.sub(plain, html)
