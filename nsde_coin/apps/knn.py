"""Moved to :mod:`nsde_coin.graph.knn` (building a graph over samples is graph construction); re-exported here so
``from nsde_coin.apps.knn import ...`` keeps working."""

from nsde_coin.graph.knn import edges_to_sparse, gaussian_knn_edges, gaussian_knn_graph, weighted_laplacian

__all__ = ["gaussian_knn_edges", "gaussian_knn_graph", "weighted_laplacian", "edges_to_sparse"]
