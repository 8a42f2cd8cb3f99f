"""The scheduler benchmark's cells: which fixed k stay in focus, and the best fixed k chosen among them only."""

from bench.scheduler import _cell_ratios, _focus


def _runs(rates: dict[str, list[float]]) -> dict[str, list[dict]]:
    return {name: [{"tokens_per_tcpu_s": r, "tokens_per_s": r} for r in values] for name, values in rates.items()}


def test_focus_keeps_adaptive_plain_and_the_fixed_k_near_the_fastest():
    runs = _runs({"fixed-0": [100.0] * 4, "fixed-1": [120.0] * 4, "fixed-2": [116.0] * 4, "fixed-4": [110.0] * 4,
                  "adaptive": [118.0] * 4, "adaptive-cold": [90.0] * 4})
    assert _focus(runs) == ["adaptive", "fixed-0", "fixed-1", "fixed-2"]


def test_best_fixed_is_chosen_among_the_focused_contenders_over_the_same_repeats():
    # fixed-2 was screened out on thread CPU; its few wall-clock runs happen to have the highest median.
    runs = _runs({"fixed-0": [100.0, 50.0, 100.0, 50.0, 100.0, 50.0], "fixed-2": [90.0, 90.0],
                  "adaptive": [98.0, 49.0, 98.0, 49.0, 98.0, 49.0], "adaptive-cold": [95.0, 47.5]})
    cells = _cell_ratios(runs, "tokens_per_s", "", focus=["adaptive", "fixed-0"])
    assert cells["best_fixed"] == "fixed-0"
    assert cells["ratio_vs_best_fixed"] == cells["ratio_vs_plain"] == 0.98
    assert cells["ratio_vs_plain_ci95"] == [0.98, 0.98]
    assert cells["cold_ratio_vs_plain"] == 0.95  # paired over the screening repeats it ran in
    assert _cell_ratios(runs, "tokens_per_s", "", focus=["adaptive", "fixed-0", "fixed-2"])["best_fixed"] == "fixed-2"
