"""`rollspec sim SCENARIO`: project a scenario, print its tables, write its plots and a JSON summary."""

import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console

from rollspec.sim.plots import plot_drain, plot_frontier, plot_staleness
from rollspec.sim.projection import Projection, project
from rollspec.sim.scenario_file import load_scenario
from rollspec.sim.table import print_projection


def run_scenario(name_or_path: str | Path, out_dir: Path, console: Console | None = None) -> dict[str, Any]:
    """Simulate every configuration of the scenario, print the tables, write PNGs and <name>.json to out_dir."""
    console = console or Console()
    scenario = load_scenario(name_or_path)
    with console.status(f"simulating {scenario.name} (sync and async x plain / fixed k / adaptive k)"):
        projection = project(scenario)
    print_projection(projection, console)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = write_plots(projection, out_dir)
    summary = _finite({"scenario": scenario.name, "description": scenario.description, **projection.summary(),
                       "assumptions": assumptions(projection), "plots": [str(p) for p in plots]})
    path = out_dir / f"{scenario.name}.json"
    path.write_text(json.dumps(summary, indent=1) + "\n")
    console.print(f"wrote {path} and {len(plots)} plots to {out_dir}")
    return summary


def write_plots(projection: Projection, out_dir: Path) -> list[Path]:
    scenario = projection.scenario
    return [
        plot_frontier(projection.frontier, projection.short_frontier, out_dir / f"{scenario.name}-frontier.png",
                      title=scenario.name, max_num_seqs=scenario.workload.max_num_seqs,
                      acceptance_length=scenario.speculation.acceptance_length),
        plot_staleness(projection, out_dir / f"{scenario.name}-staleness.png", title=scenario.name),
        plot_drain(projection.drain_trace, out_dir / f"{scenario.name}-drain.png", title=scenario.name),
    ]


def assumptions(projection: Projection) -> dict[str, dict[str, Any]]:
    scenario = projection.scenario
    out = {}
    for path, why in scenario.why.items():
        section, field = path.split(".", 1)
        value = getattr(getattr(scenario, section), field)
        out[path] = {"value": value, "why": why}
    return out


def _finite(value: Any) -> Any:
    # JSON has no Infinity; a break-even batch that never comes is written as null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
