"""Sub-commands of the ``nsde-coin`` CLI: one module each, exposing ``add_parser(subparsers)`` and ``run(args)``.

The CLI imports a command's module only when that command runs, so ``nsde-coin solvers`` stays fast.
"""

# name -> (module, one-line help). Adding a command is one line here plus its module.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("nsde_coin.commands.train", "train base / ODE / SDE networks on the embedded data set"),
    "solvers": ("nsde_coin.commands.solvers", "print the solver registry"),
    "graph": ("nsde_coin.commands.graph", "graph COIN and baselines on real graphs (the paper's protocol)"),
    "fewshot": ("nsde_coin.commands.fewshot", "transductive few-shot learning with a COIN head"),
    "covid": ("nsde_coin.commands.covid", "COVID-19 case prediction on England mobility graphs"),
    "tabular": ("nsde_coin.commands.tabular", "label-scarce tabular classification with a kNN graph"),
    "certify": ("nsde_coin.commands.certify", "certified robustness: smoothing radii (sde) and k-node COIN (graph)"),
}
