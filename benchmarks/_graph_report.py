"""The outputs of ``bench_graph.py`` (protocol mode): its Markdown tables and its figure (module doc there)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from _report import save_figure

__all__ = ["figure", "markdown"]


def markdown(rows: list[dict[str, Any]], refs: dict[str, Any]) -> str:
    """The per-(data set, model) table of worker summaries ``rows`` and the reference speed-ups ``refs``."""
    def f(v: Optional[float], spec: str) -> str:
        return "-" if v is None else format(v, spec)

    lines = ["| data set | model | runs | test acc (%) | epochs | ms / epoch (wall) | CPU ms / epoch | s / run (wall) "
             "| train peak MB |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mem = (r.get("memory") or {}).get("train_peak_mb")
        lines.append(f"| {r['dataset']} | {r['model']} | {r['runs']} | {r['test_acc_mean']:.2f} ± "
                     f"{r['test_acc_std']:.2f} | {r['epochs_mean']:.0f} | {r['epoch_time_ms_mean']:.1f} | "
                     f"{f(r.get('epoch_cpu_ms_mean'), '.1f')} | {r['run_time_s_mean']:.2f} | {f(mem, '.0f')} |")
    if refs:
        lines += ["", "| data set | original-style COIN ms / epoch (wall, CPU) | est. s / run | our COIN s / run | "
                  "speed-up per run (wall) | speed-up per epoch (CPU time) |", "|---|---|---|---|---|---|"]
        for ds, ref in refs.items():
            if ref.get("speedup_per_run"):
                lines.append(f"| {ds} | {ref['epoch_time_ms']:.0f}, {f(ref.get('epoch_cpu_ms'), '.0f')} | "
                             f"{ref['run_time_s_est']:.0f} | {ref['ours_run_time_s']:.2f} | "
                             f"{ref['speedup_per_run']:.0f}× | {f(ref.get('speedup_per_epoch_cpu'), '.0f')}"
                             f"{'×' if ref.get('speedup_per_epoch_cpu') else ''} |")
    return "\n".join(lines) + "\n"


def figure(rows: list[dict[str, Any]], path: Path, order: Sequence[str]) -> None:
    """Per data set (in ``order``): epoch vs convergence time coloured by accuracy, and training peak memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = [d for d in order if any(r["dataset"] == d for r in rows)]
    if not datasets:
        return
    fig, axes = plt.subplots(2, len(datasets), figsize=(4.6 * len(datasets), 7.6), squeeze=False)
    accs = [r["test_acc_mean"] for r in rows]
    norm = matplotlib.colors.Normalize(vmin=min(accs), vmax=max(accs))
    for j, ds in enumerate(datasets):
        sub = [r for r in rows if r["dataset"] == ds]
        ax = axes[0, j]
        sc = ax.scatter([r["epoch_time_ms_mean"] for r in sub], [r["run_time_s_mean"] for r in sub],
                        c=[r["test_acc_mean"] for r in sub], cmap="viridis", norm=norm, s=70, edgecolors="k")
        for r in sub:
            ax.annotate(r["model"], (r["epoch_time_ms_mean"], r["run_time_s_mean"]), fontsize=8,
                        xytext=(4, 4), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("time per epoch (ms)")
        ax.set_ylabel("time to convergence per run (s)")
        ax.set_title(ds)
        ax.grid(True, which="both", alpha=0.3)
        fig.colorbar(sc, ax=ax, label="test accuracy (%)")
        ax = axes[1, j]
        mem = [((r.get("memory") or {}).get("train_peak_mb") or 0.0) for r in sub]
        ax.bar([r["model"] for r in sub], mem, color="tab:blue")
        ax.set_ylabel("training peak memory (MB, CPU RSS)")
        ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
