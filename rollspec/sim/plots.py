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


def plot_frontier(typical: Frontier, short: Frontier, path: Path, *, title: str, max_num_seqs: int,
                  acceptance_length: float) -> Path:
    """Speedup over batch size x acceptance length with its 1.0 contour: fixed k at the scenario's typical
    context and at a short one, and the adaptive k. Batches a replica cannot run are hatched."""
    from matplotlib.colors import TwoSlopeNorm

    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(17, 5), sharey=True)
    panels = [(typical, typical.fixed_speedup, f"fixed k = {typical.k}, context {typical.context_tokens:,.0f}"),
              (short, short.fixed_speedup, f"fixed k = {short.k}, short answers (context {short.context_tokens:,.0f})"),
              (typical, typical.adaptive_speedup, f"adaptive k, context {typical.context_tokens:,.0f}")]
    low = min(0.5, float(min(typical.fixed_speedup.min(), short.fixed_speedup.min())))
    norm = TwoSlopeNorm(vmin=low, vcenter=1.0, vmax=max(2.0, float(typical.adaptive_speedup.max())))
    for ax, (frontier, grid, label) in zip(axes, panels):
        x, y = frontier.batch_sizes, frontier.acceptance_lengths
        mesh = ax.pcolormesh(x, y, grid, cmap="RdBu", norm=norm, shading="nearest")
        level = 1.0 + 1e-3 if grid is frontier.adaptive_speedup else 1.0  # adaptive is exactly 1.0 where k = 0
        if grid.min() < level < grid.max():
            ax.clabel(ax.contour(x, y, grid, levels=[level], colors="black", linewidths=2.5), fmt={level: "1.0x"},
                      inline=False)
        guides = [v for v in (1.5, 2.0, 3.0) if grid.min() < v < grid.max()]
        if guides:
            ax.clabel(ax.contour(x, y, grid, levels=guides, colors="0.15", linewidths=1.0, linestyles="--"),
                      fmt="%.1fx", fontsize=8, inline=False)
        if frontier.max_batch_size < x[-1]:
            ax.axvspan(frontier.max_batch_size, x[-1], facecolor="0.85", hatch="//", edgecolor="0.5", alpha=0.8)
            ax.text(frontier.max_batch_size * 1.1, y[-1] - 0.1, "KV cache full\n(or not profiled)", va="top",
                    fontsize=8)
        batch = min(max_num_seqs, frontier.max_batch_size)
        ax.plot(batch, acceptance_length, marker="*", color="gold", markersize=16, markeredgecolor="black")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size per replica (live sequences)")
        ax.set_title(label, fontsize=10)
    axes[0].set_ylabel(f"acceptance length (tokens per verify at k = {typical.k})")
    fig.colorbar(mesh, ax=axes, label="speedup over plain decoding", fraction=0.02)
    fig.suptitle(f"{title}: where speculation stops paying (black line = 1.0x; star = scenario's batch and "
                 f"acceptance)")
    fig.savefig(path, dpi=110, bbox_inches="tight")
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
    ax.set_title(f"{title}: one synchronous rollout, live sequences and adaptive k")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
