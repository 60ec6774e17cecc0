"""Graph data sets, one idea per module: :mod:`.registry` (names, sources, folders), :mod:`.preprocess` (the
paper's preprocessing and feature storage), and the readers :mod:`.npz` (gnn-benchmark), :mod:`.planetoid` and
:mod:`.graphgallery` (Amazon / Coauthor). :mod:`nsde_coin.graph.datasets` is the front door (``load_dataset``)."""
