"""England COVID-19 data (PyTorch Geometric Temporal's ``england_covid.json``): loading, snapshots, daily graphs.

The file holds 61 days × 129 NUTS3 regions of daily new cases (``y``, 61 × 129) and one directed mobility graph per
day (``edge_mapping.edge_index[str(t)]`` as a list of [source, target] pairs, ``edge_mapping.edge_weight[str(t)]``
the number of people moving; self-loops are people staying in their region).

Where the file is looked for (first hit wins): the ``path`` argument (a file, or a folder holding
``england_covid.json`` or ``covid/england_covid.json``); ``$NSDE_COIN_DATA/covid/england_covid.json``;
``<repo>/../shared/data/covid/england_covid.json``; a previous download in the cache folder
(``$NSDE_COIN_CACHE`` or ``~/.cache/nsde_coin``). With ``download=True`` a missing file is fetched from its public
URL with :mod:`urllib` and its SHA-256 checked. Every local file's SHA-256 is checked too (``verify=False`` skips it).

Snapshots follow PyTorch Geometric Temporal's ``EnglandCovidDatasetLoader``: cases standardised per region over
the whole series, ``z = (y − mean_t y) / (std_t y + 1e-10)``; snapshot s (s = 0 … 61 − lags − 1) has features
``z[s : s+lags].T`` (129, lags), target ``z[s+lags]`` (129,) and the mobility graph of day s.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import Tensor

from nsde_coin._files import atomic_write
from nsde_coin.datafiles import damaged

__all__ = ["COVID_URL", "COVID_SHA256", "CovidData", "CovidSnapshots", "locate_covid_file", "load_england_covid",
           "covid_snapshots", "daily_laplacian"]

COVID_URL = ("https://raw.githubusercontent.com/benedekrozemberczki/pytorch_geometric_temporal/master/"
             "dataset/england_covid.json")
COVID_SHA256 = "497056cc4585b58951fd5cd17554fe0c535f68ea0c907a5b5727ae30e3913450"
FILE_NAME = "england_covid.json"


@dataclass
class CovidData:
    """The raw series: ``y`` (T, N) float64 daily cases; ``edge_index[t]`` (2, E_t) long and ``edge_weight[t]``
    (E_t,) float64 the directed mobility graph of day t; ``source`` the file read."""

    y: Tensor
    edge_index: list[Tensor]
    edge_weight: list[Tensor]
    source: str


@dataclass
class CovidSnapshots:
    """Lagged snapshots: ``x`` (S, N, lags), ``y`` (S, N) standardised cases, ``edge_index``/``edge_weight`` lists
    of length S (graph of snapshot s = graph of day s), ``mean``/``std`` (N,) used for the standardisation."""

    x: Tensor
    y: Tensor
    edge_index: list[Tensor]
    edge_weight: list[Tensor]
    mean: Tensor
    std: Tensor

    @property
    def num_nodes(self) -> int:
        """Number of regions (graph nodes), the second axis of ``y``."""
        return int(self.y.shape[1])


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _candidates(path: Optional[Union[str, Path]]) -> list[Path]:
    from nsde_coin.graph.datasets import default_cache_dir, default_data_root

    if path is not None:
        p = Path(path)
        return [p] if p.suffix == ".json" else [p / FILE_NAME, p / "covid" / FILE_NAME]
    out = []
    root = default_data_root()
    if root is not None:
        out.append(root / "covid" / FILE_NAME)
    out.append(default_cache_dir() / FILE_NAME)
    return out


def locate_covid_file(path: Optional[Union[str, Path]] = None) -> Optional[Path]:
    """The first existing candidate file (see the module doc), or ``None``."""
    for cand in _candidates(path):
        if cand.is_file():
            return cand
    return None


def _missing_message(path: Optional[Union[str, Path]], extra: str = "") -> str:
    looked = ", ".join(str(c) for c in _candidates(path))
    return (f"England COVID data file {FILE_NAME} not found (looked in: {looked}){extra}. Place the file (from "
            f"{COVID_URL}, sha256 {COVID_SHA256}) at <data root>/covid/{FILE_NAME} with <data root> = $NSDE_COIN_DATA "
            f"or <repo>/../shared/data, pass --path FILE, or use --download when online")


def _download(dest: Path, url: str = COVID_URL, timeout: float = 60.0) -> Path:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (fixed https URL)
            payload = resp.read()
    except (urllib.error.URLError, OSError) as exc:
        raise FileNotFoundError(_missing_message(None, f"; download from {url} failed: {exc}")) from exc
    digest = hashlib.sha256(payload).hexdigest()
    if digest != COVID_SHA256:
        raise ValueError(f"downloaded {url} has sha256 {digest}, expected {COVID_SHA256}; not saved")
    return atomic_write(dest, payload)


def _parse(raw: Any, source: str) -> CovidData:
    if not isinstance(raw, dict) or not {"edge_mapping", "time_periods", "y"} <= set(raw):
        keys = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
        raise ValueError(f"{source}: not the England COVID format (need keys edge_mapping, time_periods, y; "
                         f"got {keys})")
    t = raw["time_periods"]
    y = np.asarray(raw["y"], dtype=np.float64)
    if not isinstance(t, int) or y.ndim != 2 or y.shape[0] != t:
        raise ValueError(f"{source}: y must have shape (time_periods, regions) = ({t}, N), got {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError(f"{source}: y contains NaN or Inf")
    n = y.shape[1]
    em = raw["edge_mapping"]
    if not isinstance(em, dict) or "edge_index" not in em or "edge_weight" not in em:
        raise ValueError(f"{source}: edge_mapping must hold edge_index and edge_weight")
    eis, ews = [], []
    for day in range(t):
        try:
            e = np.asarray(em["edge_index"][str(day)], dtype=np.int64).reshape(-1, 2)
            w = np.asarray(em["edge_weight"][str(day)], dtype=np.float64).reshape(-1)
        except KeyError as exc:
            raise ValueError(f"{source}: no graph for day {day} in edge_mapping") from exc
        if e.shape[0] != w.shape[0]:
            raise ValueError(f"{source}: day {day} has {e.shape[0]} edges but {w.shape[0]} weights")
        if e.size and (e.min() < 0 or e.max() >= n):
            raise ValueError(f"{source}: day {day} has node ids outside [0, {n})")
        if w.size and (not np.all(np.isfinite(w)) or w.min() < 0):
            raise ValueError(f"{source}: day {day} has negative or non-finite edge weights")
        eis.append(torch.from_numpy(e.T.copy()))
        ews.append(torch.from_numpy(w))
    return CovidData(torch.from_numpy(y), eis, ews, source)


def load_england_covid(path: Optional[Union[str, Path]] = None, *, download: bool = False,
                       verify: bool = True) -> CovidData:
    """Read the England COVID file (see the module doc for where it is looked for).

    Raises ``FileNotFoundError`` saying where to put the file when it is absent (and the download failed or was
    not asked for), ``ValueError`` on a checksum mismatch or a malformed file.
    """
    found = locate_covid_file(path)
    if found is None:
        if not download:
            raise FileNotFoundError(_missing_message(path))
        from nsde_coin.graph.datasets import default_cache_dir

        found = _download(default_cache_dir() / FILE_NAME)
    restore = f"replace it with a good copy of {COVID_URL} (or delete it and pass --download)"
    if verify:
        digest = _sha256(found)
        if digest != COVID_SHA256:
            raise damaged(found, f"sha256 is {digest}, expected {COVID_SHA256} (the PyTorch Geometric Temporal "
                                 f"release): the file is truncated or modified", f"{restore}; pass verify=False / "
                                                                                  f"--no-verify to use it anyway")
    try:
        raw = json.loads(found.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise damaged(found, f"is not valid JSON (truncated? {type(exc).__name__}: {exc})", restore) from None
    return _parse(raw, str(found))


def covid_snapshots(data: CovidData, lags: int = 8) -> CovidSnapshots:
    """Standardise per region and cut the series into ``T − lags`` snapshots (see the module doc)."""
    t = data.y.shape[0]
    if isinstance(lags, bool) or not isinstance(lags, int) or not 1 <= lags < t:
        raise ValueError(f"lags must be an int in [1, {t - 1}], got {lags!r}")
    mean, std = data.y.mean(0), data.y.std(0, unbiased=False)
    z = (data.y - mean) / (std + 1e-10)
    s = t - lags
    x = torch.stack([z[i: i + lags].T for i in range(s)])
    y = torch.stack([z[i + lags] for i in range(s)])
    return CovidSnapshots(x, y, data.edge_index[:s], data.edge_weight[:s], mean, std)


def daily_laplacian(snaps: CovidSnapshots, days: Optional[list[int]] = None, dtype: torch.dtype = torch.float32
                    ) -> tuple[Tensor, Tensor, Tensor]:
    """Block-diagonal Laplacian of the snapshots' mobility graphs (snapshot order, N nodes each).

    Per day: the directed weights are symmetrised, W ← (W + Wᵀ)/2, self-loops (people staying) are dropped, and the
    paper's Laplacian L = diag(Â1) − Â with Â = D̃^{-1/2}(W + I)D̃^{-1/2} is built by
    :func:`nsde_coin.graph.laplacian.laplacian` (``kind="paper"``, ``symmetrize="mean"``). Normalisation is per
    node, so one call on the union of the days (node s·N + i = region i on day s) gives the block-diagonal matrix.

    Returns:
        ``(L, edge_index, edge_weight)``: torch sparse CSR (S·N, S·N) and the symmetrised, self-loop-free weighted
        edge list it was built from (also the GCN baseline's graph).
    """
    from nsde_coin.graph.laplacian import laplacian

    days = list(range(len(snaps.edge_index))) if days is None else days
    n = snaps.num_nodes
    eis, ews = [], []
    for k, s in enumerate(days):
        ei, ew = snaps.edge_index[s], snaps.edge_weight[s]
        keep = ei[0] != ei[1]
        ei, ew = ei[:, keep], ew[keep]
        eis.append(torch.cat([ei, ei.flip(0)], 1) + k * n)
        ews.append(torch.cat([ew, ew]) * 0.5)
    edge_index, edge_weight = torch.cat(eis, 1), torch.cat(ews).to(dtype)
    total = len(days) * n
    lap = laplacian(edge_index, total, kind="paper", edge_weight=edge_weight, dtype=dtype, symmetrize="none")
    return lap, edge_index, edge_weight
