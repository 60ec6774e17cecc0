"""The ``nsde-coin`` entry point: dispatches to the sub-command modules listed in :mod:`nsde_coin.commands`."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional

from nsde_coin.commands import COMMANDS


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """Parser with every sub-command; only the module of the requested command is imported."""
    parser = argparse.ArgumentParser(prog="nsde-coin", description="Networks as convection-diffusion equations.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_) in COMMANDS.items():
        if name == wanted:
            mod = importlib.import_module(module)
            p = sub.add_parser(name, help=help_, description=(mod.__doc__ or help_).strip().splitlines()[0])
            mod.add_parser(p)
            p.set_defaults(_run=mod.run)
        else:
            sub.add_parser(name, help=help_)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    """Run the CLI; returns the process exit code (errors in user input, non-finite results and file errors print
    one line and return 2; a result saved to the fallback folder instead of ``--out`` returns 1)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0 if args.command is None else 2
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


if __name__ == "__main__":
    sys.exit(main())
