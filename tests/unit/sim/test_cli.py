"""`rollspec sim SCENARIO`: table, plots and JSON for a shipped scenario; a clear error for an unknown one."""

import json

from rollspec.launch.cli import main


def test_sim_writes_plots_and_a_summary(tmp_path, capsys):
    assert main(["sim", "tiny-cpu", "--out", str(tmp_path)]) == 0
    names = {p.name for p in tmp_path.iterdir()}
    assert {"tiny-cpu-frontier.png", "tiny-cpu-staleness.png", "tiny-cpu-drain.png", "tiny-cpu.json"} <= names
    summary = json.loads((tmp_path / "tiny-cpu.json").read_text())
    assert summary["adaptive"]["rollout_speedup"] >= summary["fixed"]["rollout_speedup"] * 0.98
    assert summary["assumptions"]["speculation.fixed_k"]["why"]
    assert "rollout speedup (sync drain)" in capsys.readouterr().out


def test_sim_rejects_an_unknown_scenario(tmp_path, capsys):
    assert main(["sim", "paper-1t-sync", "--out", str(tmp_path)]) == 2
    assert "paper-8b-sync" in capsys.readouterr().err
