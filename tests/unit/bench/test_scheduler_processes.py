"""Gathering the scheduler bench's cells over processes: per cell every process's reading, and their median."""

from bench.scheduler_processes import gather


def _result(ratios: dict[str, float]) -> dict:
    return {"rows": [{"setting": name, "tcpu_ratio_vs_best_fixed": r, "tcpu_ratio_vs_best_fixed_ci95": [r - .01, r + .01],
                      "tcpu_best_fixed": "fixed-8", "tcpu_ratio_vs_plain": 1.5, "contenders": {"adaptive": {"mean_k": 6.0}}}
                     for name, r in ratios.items()]}


def test_each_cell_keeps_every_process_and_the_summary_takes_the_worst_median():
    gathered = gather([_result({"steady-b1": 0.99, "steady-b4": 0.95}), _result({"steady-b1": 0.97, "steady-b4": 0.98}),
                       _result({"steady-b1": 0.98, "steady-b4": 0.97})])
    b4 = gathered["cells"]["steady-b4"]
    assert [p["tcpu_ratio_vs_best_fixed"] for p in b4["processes"]] == [0.95, 0.98, 0.97]
    assert (b4["median"], b4["min"], b4["max"]) == (0.97, 0.95, 0.98)
    assert gathered["cells"]["steady-b1"]["median"] == 0.98
    assert gathered["summary"] == {"median_min_ratio_vs_best_fixed": 0.97, "min_ratio_vs_best_fixed": 0.95,
                                   "num_processes": 3}
