"""The graph benchmark protocol in parts: ``train`` (one run), ``records`` (resume keys, the results file and its
lock, the summary), ``runner`` (the sweep, in process) and ``cluster`` (the sweep on Dask). The public names are
re-exported by :mod:`nsde_coin.graph.protocol`."""
