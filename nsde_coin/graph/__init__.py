"""Graph side of nsde_coin: Laplacians, graph diffusion solvers, the COIN model, data sets and the protocol."""
