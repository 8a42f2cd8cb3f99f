"""The chaos report: bench/results/chaos.json (summary + every run) and the table in CHAOS.md."""

import datetime
import json
import platform
from pathlib import Path

from rollspec.chaos.scenarios import SCENARIOS

TABLE_START = "<!-- chaos-table:start -->"
TABLE_END = "<!-- chaos-table:end -->"


def summarize(results: dict) -> dict:
    """The summary keys the issue asks for, plus fault and recovery totals."""
    runs = results["scenarios"] + results["soak"]
    recover = [r["recover_s_max"] for r in runs if r["recover_s_max"] is not None]
    return {"scenarios": len(results["scenarios"]),
            "scenarios_passed": sum(1 for r in results["scenarios"] if r["passed"]),
            "soak_seeds": len(results["soak"]), "soak_passed": sum(1 for r in results["soak"] if r["passed"]),
            "items_lost": sum(r["items_lost"] for r in runs),
            "actor_faults_injected": sum(r["actor_faults"] for r in runs),
            "actor_faults_recovered": sum(r["actor_faults_recovered"] for r in runs),
            "actor_faults_skipped": sum(r.get("faults_skipped", 0) for r in runs),
            "message_faults_injected": sum(r["message_faults_injected"] for r in runs),
            "actor_message_faults_injected": sum(_actor_total(r) for r in runs),
            "recover_s_max": round(max(recover), 1) if recover else None,
            "weights_compared": sum(1 for r in runs if r["weights_match"] is not None),
            "weights_matched": sum(1 for r in runs if r["weights_match"])}


def _actor_total(run: dict) -> int:
    """Message faults the run's actors report for their own endpoints (see Outcome.actor_message_faults)."""
    return sum(sum(counts.values()) for counts in run.get("actor_message_faults", {}).values())


def table(results: dict) -> str:
    """Markdown table, one row per scenario and soak seed."""
    rows = ["| run | disturbance | passed | actor faults recovered | message faults (broker + actors) | items lost | "
            "max recover s | max step gap s | weights = undisturbed | draft v | drops | wall s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for kind, runs in (("scenario", results["scenarios"]), ("soak", results["soak"])):
        for r in runs:
            what = SCENARIOS[r["name"]].description if kind == "scenario" else \
                ", ".join(f"{e['kind']} {e['target']} @step {e['step']}" for e in r["events"]) or "message faults only"
            drops = ", ".join(f"{k}: {v}" for k, v in sorted(r["drop_reasons"].items())) or "-"
            recover = "-" if r["recover_s_max"] is None else f"{r['recover_s_max']:.1f}"
            match = {None: "n/a", True: "yes", False: "**no**"}[r["weights_match"]]
            rows.append(f"| {r['name']} | {what} | {'yes' if r['passed'] else '**no**'} | "
                        f"{r['actor_faults_recovered']}/{r['actor_faults']} | {r['message_faults_injected']} + "
                        f"{_actor_total(r)} | {r['items_lost']} | {recover} | {r['max_step_gap_s']:.1f} | {match} | "
                        f"{r.get('draft_version', 0)} | {drops} | {r['wall_s']:.0f} |")
    return "\n".join(rows)


def write_report(results: dict, json_path: Path, *, command: str, chaos_md: Path | None = None) -> dict:
    """Write chaos.json; replace the table between the markers in CHAOS.md (if it has them)."""
    summary = summarize(results)
    meta = {"command": command, "date": datetime.date.today().isoformat(), "machine": platform.processor() or
            platform.machine(), "cpus": _cpus(), "wall_s": round(results.get("wall_s", 0.0), 1),
            "load_start": results.get("load_start"), "load_end": results.get("load_end")}
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps({"summary": summary, "meta": meta, **results}, indent=1) + "\n")
    chaos_md = chaos_md or json_path.resolve().parents[2] / "CHAOS.md"
    if chaos_md.is_file():
        text = chaos_md.read_text()
        if TABLE_START in text and TABLE_END in text:
            head, rest = text.split(TABLE_START, 1)
            _, tail = rest.split(TABLE_END, 1)
            load = ", ".join(f"{name} {'/'.join(f'{x:.1f}' for x in meta[key])}" for name, key in
                             (("start", "load_start"), ("end", "load_end")) if meta[key])
            block = (f"{TABLE_START}\nCommand: `{command}` ({meta['date']}, {meta['cpus']} cores, load average "
                     f"1/5/15 min {load or '?'}, {meta['wall_s']:.0f} s). Summary: {json.dumps(summary)}\n\n"
                     f"{table(results)}\n{TABLE_END}")
            chaos_md.write_text(head + block + tail)
    return summary


def _cpus() -> int:
    import os

    return os.cpu_count() or 0
