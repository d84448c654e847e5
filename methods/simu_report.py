"""What SIMU reports beside the model, readable without torch: its columns (declared for `harness table` and
`harness check`; diagnostics, shown, never ranked or checked), its `masks.json` summary, and the figure `harness
plot` draws from it (registered in pyproject.toml's `harness.plots`, as any method's figure would be)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from harness.metrics import Metric

METRICS = [
    Metric("simu_critical_neurons", "none", "SIMU: critical MLP neurons"),
    Metric("simu_critical_fraction", "none", "SIMU: fraction of MLP neurons critical"),
    Metric("simu_shared_neurons", "none", "SIMU: neurons critical for forget and retain"),
    Metric("simu_attribution_reused", "none", "SIMU: stage-1 scores reused in this process"),
]
SUMMARY = "masks.json"


def masks_summary(neurons, settings) -> dict:
    """`artifacts/<cell>/masks.json`: critical neurons per layer (from the per-layer boolean masks), of how
    many, and the stage-1 settings that chose them."""
    return {
        "per_layer_critical": [int(n.sum()) for n in neurons],
        "neurons_per_layer": [n.numel() for n in neurons],
        "mask": settings.mask,
        "m": settings.m,
        "t": settings.t,
        "attribution": settings.attribution,
    }


def _group(run_dir: Path, cell: str) -> str:
    """The cell's table label (`simu`, or `simu t=0.1,m=5` in a sweep), read from its result row."""
    result = run_dir / "results" / f"{cell}.json"
    if not result.exists():
        return re.sub(r"-seed\d+$", "", cell)
    row = json.loads(result.read_text())
    return f"{row['method']} {row['variant']}" if row.get("variant") else row["method"]


def read_masks(run_dir: Path):
    """One row per (cell, layer) from `artifacts/<cell>/masks.json`, grouped by method and grid point."""
    import pandas as pd

    rows = []
    for path in sorted(run_dir.glob(f"artifacts/*/{SUMMARY}")):
        summary = json.loads(path.read_text())
        group = _group(run_dir, path.parent.name)
        for layer, (critical, total) in enumerate(zip(summary["per_layer_critical"], summary["neurons_per_layer"])):
            rows.append(
                {"cell": path.parent.name, "group": group, "layer": layer, "critical": critical, "total": total}
            )
    return pd.DataFrame(rows)


def plot_critical_neurons(masks, path: Path, order: list[str] = ()) -> Path:
    """Grouped bars: per layer, the mean number of critical neurons of each SIMU setting (± std over seeds),
    the settings in `order` (the leaderboard's) first."""
    from harness.plots import plt, save

    stats = masks.groupby(["group", "layer"], sort=False)["critical"].agg(["mean", "std", "count"]).reset_index()
    present = list(dict.fromkeys(stats["group"]))
    groups = [g for g in order if g in present] + [g for g in present if g not in order]
    layers = sorted(stats["layer"].unique())
    width = 0.8 / len(groups)
    fig, ax = plt.subplots(figsize=(max(5.5, 1.1 * len(layers) * max(1, len(groups) / 3)), 4.2))
    colours = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20")
    for i, group in enumerate(groups):
        g = stats[stats["group"] == group]
        ax.bar(
            g["layer"] + (i - (len(groups) - 1) / 2) * width,
            g["mean"],
            width,
            yerr=g["std"].fillna(0),
            capsize=2,
            color=colours(i % colours.N),
            label=f"{group} (n={int(g['count'].max())})",
        )
    total = int(masks["total"].max())
    ax.set_xticks(layers, [str(layer) for layer in layers])
    ax.set_xlabel("layer")
    ax.set_ylabel(f"critical neurons (of {total} per layer)")
    ax.set_title("SIMU: critical MLP neurons per layer (mean ± std over seeds)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    return save(fig, path)


def plot(run_dir: Path, order: list[str], out: Path) -> list[Path]:
    """`simu_neurons.png` when the run has SIMU cells (a `harness.plots` entry point)."""
    masks = read_masks(run_dir)
    return [plot_critical_neurons(masks, out / "simu_neurons.png", order)] if len(masks) else []
