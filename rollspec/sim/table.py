"""The projection as rich tables: step times per configuration, and every assumption with its reason."""

from rich.console import Console
from rich.table import Table

from rollspec.sim.projection import Projection
from rollspec.sim.scenario import Scenario
from rollspec.sim.speculation import Speculation


def results_table(projection: Projection) -> Table:
    """Sync and async (at the scenario's staleness bound, and at the best one) step times and speedups."""
    scenario = projection.scenario
    s = scenario.training.max_staleness
    table = Table(title=f"{scenario.name}: simulated GRPO step ({scenario.num_replicas} rollout replicas, "
                        f"{scenario.training_config(0).trajectories_per_step} trajectories per replica per step)")
    for column in ("configuration", "step s", "rollout s", "rollout share", "mean k", "speedup vs sync plain"):
        table.add_column(column, justify="left" if column == "configuration" else "right")
    base = projection.sync[Speculation.PLAIN].mean_step_s
    for mode in Speculation:
        result = projection.sync[mode]
        table.add_row(f"sync, {mode.value}", f"{result.mean_step_s:,.1f}", f"{result.rollout_s.mean():,.1f}",
                      f"{100 * result.rollout_fraction:.0f}%", f"{result.stats.mean_k:.2f}",
                      f"{base / result.mean_step_s:.2f}x")
    for mode in Speculation:
        result = projection.sweep[mode][s]
        table.add_row(f"async s={s}, {mode.value}", f"{result.mean_step_s:,.1f}", "-",
                      f"gen busy {100 * result.generator_utilization:.0f}%", f"{result.stats.mean_k:.2f}",
                      f"{projection.e2e_speedup(mode, s):.2f}x")
    for mode in (Speculation.FIXED, Speculation.ADAPTIVE):
        best, best_s = projection.best_e2e(mode)
        table.add_row(f"best async (s={best_s}), {mode.value}", f"{projection.sweep[mode][best_s].mean_step_s:,.1f}",
                      "-", "-", "-", f"{best:.2f}x")
    return table


def assumptions_table(scenario: Scenario) -> Table:
    table = Table(title=f"{scenario.name}: assumptions", show_lines=False)
    table.add_column("field")
    table.add_column("value", justify="right")
    table.add_column("why", overflow="fold")
    for path, why in scenario.why.items():
        section, field = path.split(".", 1)
        value = getattr(getattr(scenario, section), field)
        table.add_row(path, f"{value:.4g}" if isinstance(value, float) else str(value), why)
    return table


def print_projection(projection: Projection, console: Console | None = None) -> None:
    console = console or Console()
    scenario = projection.scenario
    console.print(assumptions_table(scenario))
    console.print(results_table(projection))
    frontier = projection.frontier
    fixed = projection.rollout_speedup(Speculation.FIXED)
    adaptive = projection.rollout_speedup(Speculation.ADAPTIVE)
    length = scenario.speculation.acceptance_length
    batch = frontier.break_even_batch(length)
    where = (f"above batch {batch:g} per replica" if batch != float("inf")
             else f"at no batch a replica can run (up to {frontier.max_batch_size:.0f})")
    console.print(f"rollout speedup (sync drain): fixed k={frontier.k} {fixed:.2f}x, adaptive {adaptive:.2f}x; "
                  f"at acceptance length {length} and {frontier.context_tokens:,.0f} cached tokens, fixed-k "
                  f"speculation stops paying {where}")
