"""Repository-wide pytest set-up: notebooks and tests run in small-size mode unless NSDE_COIN_SMALL is set."""

import os

os.environ.setdefault("NSDE_COIN_SMALL", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
