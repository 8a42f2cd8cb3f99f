"""PNG plots of a projection: the speculation frontier, speedup vs staleness bound, and one drain's tail.

matplotlib is imported inside each function, so the simulator itself never needs it.
"""

from pathlib import Path

import numpy as np

from rollspec.sim.frontier import Frontier
from rollspec.sim.projection import Projection
from rollspec.sim.speculation import Speculation

_LABELS = {Speculation.PLAIN: "plain decoding", Speculation.FIXED: "speculation, fixed k",
           Speculation.ADAPTIVE: "speculation, adaptive k (rollspec)"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def plot_frontier(frontier: Frontier, path: Path, *, title: str, operating_point: tuple[float, float]) -> Path:
    """Speedup over batch size x acceptance length, fixed k (left) and adaptive k (right), with the 1.0 contour."""
    from matplotlib.colors import TwoSlopeNorm

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    grids = [(frontier.fixed_speedup, f"fixed k = {frontier.k}"), (frontier.adaptive_speedup, "adaptive k (best per cell)")]
    vmax = max(2.0, float(frontier.adaptive_speedup.max()))
    norm = TwoSlopeNorm(vmin=min(0.5, float(frontier.fixed_speedup.min())), vcenter=1.0, vmax=vmax)
    x, y = frontier.batch_sizes, frontier.acceptance_lengths
    for ax, (grid, label) in zip(axes, grids):
        mesh = ax.pcolormesh(x, y, grid, cmap="RdBu", norm=norm, shading="nearest")
        levels = [1.0 + 1e-3] if grid is frontier.adaptive_speedup else [1.0]
        contour = ax.contour(x, y, grid, levels=levels, colors="black", linewidths=2)
        ax.clabel(contour, fmt={levels[0]: "1.0x"}, fontsize=9)
        more = ax.contour(x, y, grid, levels=[1.5, 2.0, 3.0], colors="0.3", linewidths=0.8, linestyles="--")
        ax.clabel(more, fmt="%.1fx", fontsize=8)
        ax.plot(*operating_point, marker="*", color="gold", markersize=16, markeredgecolor="black")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size per replica (live sequences)")
        ax.set_title(label)
    axes[0].set_ylabel(f"acceptance length (tokens per verify at k = {frontier.k})")
    fig.colorbar(mesh, ax=axes, label="speedup over plain decoding")
    fig.suptitle(f"{title}: where speculation stops paying (context {frontier.context_tokens:.0f} tokens; "
                 f"star = scenario)")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_staleness(projection: Projection, path: Path, *, title: str) -> Path:
    """End-to-end speedup over synchronous plain decoding, per staleness bound and speculation mode."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for mode, results in projection.sweep.items():
        bounds = sorted(results)
        ax.plot(bounds, [projection.e2e_speedup(mode, s) for s in bounds], marker="o", label=_LABELS[mode])
    ax.axhline(1.0, color="0.5", linewidth=0.8)
    ax.set_xlabel("staleness bound s (0 = synchronous)")
    ax.set_ylabel("end-to-end step speedup vs sync plain")
    colocated = "colocated rollout and learner" if projection.scenario.training.colocated else "separate GPU pools"
    ax.set_title(f"{title}: speedup vs staleness bound ({colocated})")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_drain(trace: list[tuple[float, int, int]], path: Path, *, title: str) -> Path:
    """One synchronous rollout on one replica: live batch size and the adaptive k over time."""
    plt = _pyplot()
    t, batch, k = (np.array(column) for column in zip(*trace))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.step(t, batch, where="post", color="tab:blue", label="live sequences B")
    ax.set_xlabel("seconds into the rollout")
    ax.set_ylabel("live sequences B", color="tab:blue")
    ax.set_yscale("log", base=2)
    twin = ax.twinx()
    twin.step(t, k, where="post", color="tab:red", label="chosen k")
    twin.set_ylabel("chosen draft depth k", color="tab:red")
    twin.set_ylim(-0.2, max(k.max(), 1) + 0.5)
    ax.set_title(f"{title}: the long tail, and k rising as B shrinks")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
