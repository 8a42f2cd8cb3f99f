"""`rollspec sim SCENARIO`: table, plots and JSON for a scenario; a clear error for an unknown one."""

import json
import shutil

import yaml

from rollspec.launch.cli import main
from rollspec.sim.scenario_file import SCENARIO_DIR


def _small_tiny_cpu(tmp_path):
    """The shipped tiny-cpu scenario, with fewer steps and bounds so the test stays fast."""
    doc = yaml.safe_load((SCENARIO_DIR / "tiny-cpu.yaml").read_text())
    doc["simulation"]["num_steps"]["value"] = 3
    doc["training"]["staleness_sweep"]["value"] = [0, 2]
    shutil.copy(SCENARIO_DIR / "tiny-cpu-measured.json", tmp_path / "tiny-cpu-measured.json")
    path = tmp_path / "tiny-cpu.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_sim_writes_plots_and_a_summary(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["sim", str(_small_tiny_cpu(tmp_path)), "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"tiny-cpu-frontier.png", "tiny-cpu-staleness.png", "tiny-cpu-drain.png", "tiny-cpu.json"} <= names
    summary = json.loads((out / "tiny-cpu.json").read_text())
    assert summary["adaptive"]["rollout_speedup"] >= summary["fixed"]["rollout_speedup"] * 0.98
    assert summary["assumptions"]["speculation.fixed_k"]["why"]
    assert "rollout speedup (sync drain)" in capsys.readouterr().out


def test_sim_rejects_an_unknown_scenario(tmp_path, capsys):
    assert main(["sim", "paper-1t-sync", "--out", str(tmp_path)]) == 2
    assert "paper-8b-sync" in capsys.readouterr().err
