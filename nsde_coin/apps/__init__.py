"""The paper's other applications: graphs over samples, few-shot learning, COVID-19 forecasting, tabular data.

Every name in ``__all__`` loads its module on first use, so ``import nsde_coin.apps`` (and the CLI) import none of
the applications until one is asked for. ``weighted_laplacian`` is the combinatorial Laplacian diag(W·1) − W of the
symmetric kNN weights, i.e. ``nsde_coin.graph.laplacian.laplacian(..., kind="comb", symmetrize="none")``.
"""

from nsde_coin._lazy import lazy_attributes

_LAZY = {
    "FewShotConfig": "nsde_coin.apps.fewshot", "run_fewshot": "nsde_coin.apps.fewshot",
    "FewShotFeatures": "nsde_coin.apps.fewshot_data", "digits_features": "nsde_coin.apps.fewshot_data",
    "load_features_file": "nsde_coin.apps.fewshot_data",
    "CovidConfig": "nsde_coin.apps.covid", "run_covid": "nsde_coin.apps.covid",
    "covid_snapshots": "nsde_coin.apps.covid_data", "load_england_covid": "nsde_coin.apps.covid_data",
    "TabularConfig": "nsde_coin.apps.tabular", "breast_cancer": "nsde_coin.apps.tabular",
    "load_csv": "nsde_coin.apps.tabular", "run_tabular": "nsde_coin.apps.tabular",
    "gaussian_knn_edges": "nsde_coin.graph.knn", "gaussian_knn_graph": "nsde_coin.graph.knn",
    "weighted_laplacian": "nsde_coin.graph.knn",
}
__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = [
    # few-shot learning
    "FewShotConfig",
    "FewShotFeatures",
    "digits_features",
    "load_features_file",
    "run_fewshot",
    # COVID-19 forecasting
    "CovidConfig",
    "covid_snapshots",
    "load_england_covid",
    "run_covid",
    # label-scarce tabular classification
    "TabularConfig",
    "breast_cancer",
    "load_csv",
    "run_tabular",
    # Gaussian kNN graphs over samples
    "gaussian_knn_edges",
    "gaussian_knn_graph",
    "weighted_laplacian",
]
