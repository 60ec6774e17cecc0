"""The ``nsde-coin`` entry point: dispatches to the sub-command modules listed in :mod:`nsde_coin.commands`."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any, Optional

from nsde_coin.commands import COMMANDS


def describe(doc: Optional[str], fallback: str) -> str:
    """A command's ``--help`` description: the first paragraph of its module docstring, as one line."""
    first = (doc or "").strip().split("\n\n")[0].replace("``", "")
    return " ".join(first.split()) or fallback


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """Parser with every sub-command; only the module of the requested command is imported (so ``nsde-coin --help``
    and ``nsde-coin solvers`` import neither :mod:`nsde_coin.apps` nor PyTorch Geometric)."""
    parser = argparse.ArgumentParser(prog="nsde-coin", description="Networks as convection-diffusion equations. "
                                     "Every sub-command shares one vocabulary: --out FILE is the results file (a "
                                     "figure goes next to it as FILE with .png), --epochs the epoch budget, "
                                     "--threads the torch threads (default 1), --json prints the record.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_) in COMMANDS.items():
        if name == wanted:
            from nsde_coin.commands.common import HelpFormatter

            mod = importlib.import_module(module)
            p = sub.add_parser(name, help=help_, description=describe(mod.__doc__, help_),
                               formatter_class=HelpFormatter)
            mod.add_parser(p)
            p.set_defaults(_run=mod.run)
        else:
            sub.add_parser(name, help=help_)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    """Run the CLI; returns the process exit code (errors in user input, non-finite results and file errors print
    one line and return 2; a result saved to the fallback folder instead of ``--out`` returns 1)."""
    if argv is None:  # the console script (not a caller's in-process use): warnings as one line each, like errors
        _one_line_warnings()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0 if args.command is None else 2
    import torch

    threads = torch.get_num_threads()  # --threads applies to this command only (main may be called in-process)
    try:
        return int(args._run(args) or 0)
    except (ValueError, TypeError, FloatingPointError, OSError) as exc:
        # user input (ValueError/TypeError), non-finite results (nsde_coin.errors.NonFiniteError, and any other
        # FloatingPointError), files and folders (OSError: missing, unreadable, not writable): one line, exit 2
        text = " ".join(str(exc).split("\n")) or type(exc).__name__
        print(f"nsde-coin {args.command}: error: {text}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM during a protocol sweep: clean-up has run, no traceback
        print(f"nsde-coin {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def _one_line_warnings() -> None:
    """Show each warning as ``nsde-coin: warning: <Category>: <message>`` on one line (no file path, no source line),
    and show the library's deprecations, which Python hides by default outside ``__main__``."""
    import warnings

    from nsde_coin.errors import NsdeDeprecationWarning

    def show(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        text = " ".join(str(message).split())
        print(f"nsde-coin: warning: {category.__name__}: {text}", file=file or sys.stderr)

    warnings.showwarning = show
    warnings.filterwarnings("default", category=NsdeDeprecationWarning)


if __name__ == "__main__":
    sys.exit(main())
