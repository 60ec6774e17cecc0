"""Certified robustness from the diffusion (docs/certify.md).

* :mod:`nsde_coin.certify.smoothing` — randomized-smoothing L2 certificates for SDE networks with a pure-diffusion
  prefix (Cohen et al.'s CERTIFY / PREDICT and the soft-output Lipschitz form).
* :mod:`nsde_coin.certify.graph` — exact certificates for COIN against arbitrary feature changes at k nodes.
* :mod:`nsde_coin.certify.stats` — the confidence bounds (Clopper–Pearson, Hoeffding, empirical Bernstein).
"""

from nsde_coin.certify.graph import CERTIFIABLE_SOLVERS, GraphCertificate, certify_nodes, diffusion_rows
from nsde_coin.certify.smoothing import BOUNDS, PathStats, SmoothingCertificate, certify, predict, sample_paths
from nsde_coin.certify.stats import bernstein_lower, clopper_pearson_lower, hoeffding_lower, radius

__all__ = [
    "BOUNDS",
    "CERTIFIABLE_SOLVERS",
    "GraphCertificate",
    "PathStats",
    "SmoothingCertificate",
    "bernstein_lower",
    "certify",
    "certify_nodes",
    "clopper_pearson_lower",
    "diffusion_rows",
    "hoeffding_lower",
    "predict",
    "radius",
    "sample_paths",
]
