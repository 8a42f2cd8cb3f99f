"""Actor-side message-fault counts: summed per actor from its endpoints, carried into the chaos report."""

import json
import types

from rollspec.actors.metric_samples import endpoint_faults
from rollspec.chaos.report import TABLE_END, TABLE_START, summarize, write_report


def endpoint(**faults):
    return types.SimpleNamespace(stats=lambda: types.SimpleNamespace(faults=faults))


def test_endpoint_faults_sums_kinds_over_endpoints_without_sent():
    counts = endpoint_faults([endpoint(sent=50, dropped=3, corrupted=1), None, endpoint(sent=9, dropped=2, delayed=0)])
    assert counts == {"dropped": 5, "corrupted": 1}
    assert endpoint_faults([endpoint(sent=10, dropped=0)]) == {}


def run(name, actor_faults, **extra):
    return {"name": name, "passed": True, "items_lost": 0, "events": [], "drop_reasons": {}, "max_step_gap_s": 1.0,
            "wall_s": 10.0, "weights_match": None, "actor_faults": 0, "actor_faults_recovered": 0,
            "message_faults_injected": 7, "recover_s_max": None, "actor_message_faults": actor_faults, **extra}


def test_report_counts_broker_and_actor_faults_and_records_the_load(tmp_path):
    results = {"scenarios": [run("net-faults", {"rollout-0": {"dropped": 4}, "draft-refresh": {"duplicated": 2}},
                                 draft_version=3)],
               "soak": [run("soak-0", {"reward-0": {"corrupted": 1}})],
               "wall_s": 20.0, "load_start": [1.0, 2.0, 3.0], "load_end": [4.0, 5.0, 6.0]}
    summary = summarize(results)
    assert summary["message_faults_injected"] == 14 and summary["actor_message_faults_injected"] == 7
    chaos_md = tmp_path / "CHAOS.md"
    chaos_md.write_text(f"head\n{TABLE_START}\nold\n{TABLE_END}\ntail\n")
    write_report(results, tmp_path / "chaos.json", command="rollspec chaos x", chaos_md=chaos_md)
    text = chaos_md.read_text()
    assert "old" not in text and text.startswith("head\n") and text.endswith("tail\n")
    assert "load average 1/5/15 min start 1.0/2.0/3.0, end 4.0/5.0/6.0" in text
    assert "| net-faults |" in text and "| 7 + 6 |" in text and "| 7 + 1 |" in text
    meta = json.loads((tmp_path / "chaos.json").read_text())["meta"]
    assert meta["load_end"] == [4.0, 5.0, 6.0]
