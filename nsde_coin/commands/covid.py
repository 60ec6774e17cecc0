"""COVID-19 next-day case prediction on England's mobility graphs with 90% of the training targets missing.

Reads PyTorch Geometric Temporal's ``england_covid.json`` offline (``--path``, ``$NSDE_COIN_DATA/covid/`` or
``<repo>/../shared/data/covid/``; ``--download`` fetches it when online). COIN (base regressor + 10 × [dropout,
u − 0.5·L_t u]) against linear regression, the MLP base alone and a GCN, on the same masks; test MSE (standardised
cases) mean ± std over masks × initialisations.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from nsde_coin.commands.common import (
    add_common_arguments,
    add_deprecated_alias,
    check_output,
    emit,
    environment,
    format_table,
    set_threads,
    small_mode,
)
from nsde_coin.commands.engine import add_engine_arguments, engine_options


def add_parser(p: argparse.ArgumentParser) -> None:
    from nsde_coin.apps.covid import MODELS

    d = p.add_argument_group("data")
    d.add_argument("--path", type=Path, default=None,
                   help="england_covid.json, or a folder holding it (default $NSDE_COIN_DATA/covid/ or "
                        "<repo>/../shared/data/covid/)")
    d.add_argument("--download", action="store_true", help="download the file if it is not found (needs internet)")
    d.add_argument("--no-verify", action="store_true", help="skip the sha256 check of the file")
    d.add_argument("--lags", type=int, default=8, help="days of history per prediction (default 8)")
    r = p.add_argument_group("protocol")
    r.add_argument("--missing", type=float, default=0.9, help="fraction of training targets missing (default 0.9)")
    r.add_argument("--masks", type=int, default=None, help="random masks (default 10; 3 in small mode)")
    r.add_argument("--inits", type=int, default=None, help="initialisations per mask (default 10; 2 in small mode)")
    r.add_argument("--epochs", type=int, default=None,
                   help="epoch budget: Adam steps, the best validation epoch is kept (default 200; 100 in small mode)")
    r.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS),
                   help=f"models to run (default: all, {' '.join(MODELS)})")
    r.add_argument("--seed", type=int, default=0, help="mask / initialisation seed (default 0)")
    m = p.add_argument_group("COIN")
    m.add_argument("--layer-num", dest="layers", metavar="LAYER_NUM", type=int, default=10,
                   help="diffusion steps (default 10)")
    add_deprecated_alias(m, "--layers", "--layer-num")
    m.add_argument("--sigma2", type=float, default=0.5, help="diffusion step σ² (default 0.5)")
    m.add_argument("--allow-unstable", action="store_true",
                   help="let the explicit diffusion step run past sigma2·lambda_max >= 2 (otherwise an error)")
    m.add_argument("--dropout", type=float, default=0.25, help="dropout before each diffusion step (default 0.25)")
    m.add_argument("--lr", type=float, default=0.01, help="Adam learning rate (default 0.01)")
    m.add_argument("--weight-decay", type=float, default=5e-4, help="Adam weight decay (default 5e-4)")
    add_common_arguments(p)
    add_engine_arguments(p, "a model × a mask with its inits")


def run(args: argparse.Namespace) -> int:
    from nsde_coin.apps.covid import CovidConfig, run_covid
    from nsde_coin.apps.covid_data import covid_snapshots, load_england_covid

    check_output(args.out)  # a bad --out fails now, not after the computation
    engine = engine_options(args)
    set_threads(args.threads)
    start = time.perf_counter()
    data = load_england_covid(args.path, download=args.download, verify=not args.no_verify)
    snaps = covid_snapshots(data, args.lags)
    small = small_mode()
    cfg = CovidConfig(lags=args.lags, missing=args.missing,
                      masks=args.masks if args.masks is not None else (3 if small else 10),
                      inits=args.inits if args.inits is not None else (2 if small else 10),
                      epochs=args.epochs if args.epochs is not None else (100 if small else 200),
                      layers=args.layers, sigma2=args.sigma2, allow_unstable=args.allow_unstable,
                      dropout=args.dropout, lr=args.lr,
                      weight_decay=args.weight_decay, models=tuple(args.models), seed=args.seed)
    rec = run_covid(snaps, cfg, progress=not args.no_progress, source=data.source, **engine)
    rec["environment"] = environment(time.perf_counter() - start)
    rows = []
    for r in rec["results"].values():
        t = r["test_mse"]
        rows.append((r["method"], f"{t['mean']:.4f} ± {t['std']:.4f}", t["runs"],
                     f"{r['val_mse']['mean']:.4f}", r.get("best_epoch_median", "-")))
    table = format_table(("model", "test MSE (mean ± std)", "runs", "val MSE", "best epoch (median)"), rows)
    s = rec["stability"]
    table += (f"\n\n{cfg.missing:.0%} of training targets missing ({rec['observed_training_targets_per_snapshot']} "
              f"observed regions per training snapshot); sigma2·lambda_max = {s['sigma2_lambda_max']:.3f} "
              f"(stable iff < 2); wall {rec['environment']['wall_s']:.1f} s")
    return emit(rec, table, args)
