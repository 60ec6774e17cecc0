"""Certified robustness from the diffusion (docs/certify.md).

* :mod:`nsde_coin.certify.graph` — exact certificates for COIN against arbitrary feature changes at k nodes.
"""

from nsde_coin.certify.graph import CERTIFIABLE_SOLVERS, GraphCertificate, certify_nodes, diffusion_rows

__all__ = [
    "CERTIFIABLE_SOLVERS",
    "GraphCertificate",
    "certify_nodes",
    "diffusion_rows",
]
