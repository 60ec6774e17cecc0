"""Print the solver registry as a table (or JSON records with ``--json``)."""

from __future__ import annotations

import argparse
import json

from nsde_coin.commands.common import format_table
from nsde_coin.solvers import FAMILIES, list_solvers


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--family", choices=FAMILIES, help="only this family (default: all families)")
    p.add_argument("--json", action="store_true", help="print machine-readable records")


def _order(info) -> str:
    if info.family != "sde":
        return "-"
    orders = sorted(set(info.strong_order.values()))
    return "/".join(f"{o:g}" for o in orders)


def run(args: argparse.Namespace) -> int:
    infos = list_solvers(args.family)
    if args.json:
        print(json.dumps([i.record() for i in infos], indent=1))
        return 0
    head = ("family", "name", "backend", "sde_type", "noise types", "strong", "weak/order", "grad modes", "notes")
    rows = []
    for i in infos:
        notes = []
        if getattr(i, "adaptive", False):  # each family's record has only its own fields
            notes.append("adaptive")
        if getattr(i, "levy_area", None):
            notes.append(f"Lévy area: {i.levy_area}")
        if getattr(i, "adjoint_capable", False):
            notes.append("adjoint method")
        if getattr(i, "unconditionally_stable", False):
            notes.append("unconditionally stable")
        if i.stochastic and i.family == "graph":
            notes.append("Monte Carlo")
        weak = "-" if i.weak_order is None else f"{i.weak_order:g}"
        rows.append((i.family, i.name, i.backend, "/".join(getattr(i, "sde_types", ())) or "-",
                     ",".join(getattr(i, "noise_types", ())) or "-",
                     _order(i), weak, ",".join(i.grad_modes), "; ".join(notes)))
    print(format_table(head, rows))
    return 0
