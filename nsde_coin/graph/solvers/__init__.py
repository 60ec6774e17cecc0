"""The graph solvers, one small module each; importing this package registers them (family ``"graph"``).

Like torchdiffeq's solver table: :func:`nsde_coin.graph.diffusion.diffuse` is the one entry, it looks the solver up
in the registry (:func:`nsde_coin.solvers.get_solver`) and calls its ``impl(u, op, sigma2, layer_num, **options)``
with ``u`` as (n, columns) and ``op`` a :class:`~nsde_coin.graph.operator.GraphOperator`. An implementation returns
``(u_T, stderr or None)``; its keyword-only parameters are the options ``diffuse`` lets through (any other raises).
A module here is named after the solver it registers:

* :mod:`~nsde_coin.graph.solvers.explicit` — explicit Euler ``u ← (I − σ²L) u`` (the paper's COIN step);
* :mod:`~nsde_coin.graph.solvers.implicit` — implicit Euler by conjugate gradients (or sparse LU);
* :mod:`~nsde_coin.graph.solvers.exact` — the heat kernel ``exp(−T L) u`` by a Chebyshev expansion;
* :mod:`~nsde_coin.graph.solvers.random_walk` — Monte Carlo over random walks (Feynman–Kac).

A new graph solver is one more module of this shape plus its name in :data:`TABLE`.
"""

import importlib

__all__ = ["TABLE"]

TABLE = ("explicit", "implicit", "exact", "random_walk")
"""The graph solvers in table order (the order ``list_solvers("graph")`` reports); each is the module of that name."""

for _name in TABLE:
    importlib.import_module(f"{__name__}.{_name}")  # the import registers the solver
