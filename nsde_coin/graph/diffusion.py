"""Graph diffusion solvers for u_t = −σ² L u (registered in :mod:`nsde_coin.solvers` under family "graph").

Stub: the implementations land with the graph COIN work.
"""
