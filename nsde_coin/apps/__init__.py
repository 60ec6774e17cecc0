"""The paper's other applications: graphs over samples, few-shot learning, COVID-19 forecasting, tabular data.

Every name in ``__all__`` loads its module on first use, so ``import nsde_coin.apps`` (and the CLI) import none of
the applications until one is asked for. The Gaussian kNN graph builder the applications use is
:mod:`nsde_coin.graph.knn` (``nsde_coin.graph.gaussian_knn_graph`` & co.).
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
}
# the kNN builder moved to nsde_coin.graph.knn (graph construction): the 0.1 spellings warn for one release
__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, {name: ("nsde_coin.graph", name) for name in (
    "gaussian_knn_edges", "gaussian_knn_graph", "weighted_laplacian")})

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
]
