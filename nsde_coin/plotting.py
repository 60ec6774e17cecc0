"""Decision regions of (B, d) -> (B, C) probability models, drawn in the 2-D latent plane of the embedded data.

A grid of latent points z ∈ R² is mapped through the data set's embedding x = z Qᵀ (see :mod:`nsde_coin.toydata`),
each model is evaluated on the grid, and the predicted class is drawn as a coloured region whose shade fades to
white where the model is unsure (max_c p_c → 1/C). Test points are overlaid with their true class.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from nsde_coin._checks import all_finite
from nsde_coin._files import atomic_write
from nsde_coin.errors import NonFiniteError
from nsde_coin.toydata import ToyData

_CLASS_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")


@torch.no_grad()
def grid_probabilities(
    model: nn.Module, data: ToyData, *, resolution: int = 120, margin: float = 0.15, batch_size: int = 4096
) -> tuple[torch.Tensor, tuple[float, float, float, float]]:
    """Evaluate ``model`` on a ``resolution × resolution`` latent grid.

    Raises :class:`~nsde_coin.errors.NonFiniteError` if a model returns NaN/Inf on the grid.

    Returns ``(probs, extent)``: probs has shape (resolution, resolution, C) with rows along z₂ (bottom to top)
    and columns along z₁; extent is (z₁min, z₁max, z₂min, z₂max) of the grid.
    """
    if not isinstance(resolution, int) or resolution < 2:
        raise ValueError(f"resolution={resolution!r} is not valid; expected an int >= 2")
    z_all = torch.cat([data.z_train, data.z_test])
    lo = z_all.min(dim=0).values - margin
    hi = z_all.max(dim=0).values + margin
    g1 = torch.linspace(float(lo[0]), float(hi[0]), resolution)
    g2 = torch.linspace(float(lo[1]), float(hi[1]), resolution)
    zz2, zz1 = torch.meshgrid(g2, g1, indexing="ij")
    z = torch.stack([zz1.reshape(-1), zz2.reshape(-1)], dim=1)
    x = data.embed(z)
    was_training = model.training
    model.eval()
    try:
        probs = torch.cat([model(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])
    finally:
        model.train(was_training)
    if not all_finite(probs):
        raise NonFiniteError(f"model returned non-finite probabilities on the plotting grid "
                             f"({int((~torch.isfinite(probs)).sum())} of {probs.numel()} entries are NaN/Inf)")
    extent = (float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1]))
    return probs.reshape(resolution, resolution, -1), extent


def plot_decision_regions(
    models: Mapping[str, nn.Module],
    data: ToyData,
    path: Union[str, Path],
    *,
    titles: Optional[Mapping[str, str]] = None,
    resolution: int = 120,
    max_points: int = 600,
    suptitle: Optional[str] = None,
) -> Path:
    """Draw one panel per model (decision regions + test points) and save a PNG to ``path``.

    Args:
        models: name → model returning probabilities (B, C); panels appear in this order.
        data: the :class:`~nsde_coin.toydata.ToyData` the models were trained on (its embedding maps the grid).
        path: output PNG file; parent folders are created; written atomically (temp file + rename), so a failed
            save leaves no partial PNG.
        titles: optional name → panel title (default: the name).
        resolution: grid points per axis.
        max_points: at most this many test points are overlaid (the first ones; the split is already random).
        suptitle: figure title.

    Returns:
        The path written.
    """
    if not models:
        raise ValueError("models is empty; give at least one name -> model")
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgb
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    n_cls = data.classes
    colors = torch.tensor([to_rgb(_CLASS_COLORS[c % len(_CLASS_COLORS)]) for c in range(n_cls)])
    fig, axes = plt.subplots(1, len(models), figsize=(4.4 * len(models) + 0.8, 4.6), squeeze=False,
                             constrained_layout=True)
    try:
        zt, yt = data.z_test[:max_points], data.y_test[:max_points]
        for ax, (name, model) in zip(axes[0], models.items()):
            probs, extent = grid_probabilities(model, data, resolution=resolution)
            conf, pred = probs.max(dim=-1)
            # shade: 0 at chance level (1/C), 1 at certainty
            shade = ((conf - 1.0 / n_cls) / (1.0 - 1.0 / n_cls)).clamp(0, 1)[..., None]
            rgb = 1.0 - 0.55 * shade * (1.0 - colors[pred])
            ax.imshow(rgb.numpy(), origin="lower", extent=extent, aspect="equal", interpolation="nearest")
            ax.scatter(zt[:, 0].numpy(), zt[:, 1].numpy(), c=[_CLASS_COLORS[int(c) % len(_CLASS_COLORS)] for c in yt],
                       s=9, edgecolors="k", linewidths=0.3)
            ax.set_title((titles or {}).get(name, name), fontsize=10)
            ax.set_xlabel("latent $z_1$ (projection $Q^T x$)")
            ax.set_ylabel("latent $z_2$")
        handles = [Patch(facecolor=_CLASS_COLORS[c % len(_CLASS_COLORS)], alpha=0.6, label=f"class {c} region")
                   for c in range(n_cls)]
        handles.append(Line2D([], [], marker="o", linestyle="", markerfacecolor="w", markeredgecolor="k",
                              label="test points (true class)"))
        fig.legend(handles=handles, loc="outside right center", fontsize=8, title="pale = unsure", title_fontsize=8)
        if suptitle:
            fig.suptitle(suptitle, fontsize=11)
        path = atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=100))  # never a half-written PNG
    finally:
        plt.close(fig)  # also when a model fails on the grid: no figure leaks
    return path
