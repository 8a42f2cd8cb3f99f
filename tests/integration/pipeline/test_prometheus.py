"""Live metrics for real: `rollspec train` submitted with `ray job submit` to a `ray start --head` started
by the test; while it runs, the node's Prometheus endpoint is scraped (plain HTTP, as Prometheus
would) until every rollspec metric has shown up with a sane value. Also checks that every port the
cluster listens on is bound to loopback."""

import json
import math
import re
import secrets
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import pytest

from rollspec.actors.metric_catalog import CATALOG, prometheus_name

REPO = Path(__file__).resolve().parents[3]
RAY = str(Path(sys.executable).parent / "ray")
RUN = "metrics"
K_MAX = 3
LINE = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(port: int) -> dict[str, list[tuple[dict, float]]]:
    """Series on the endpoint: name -> [(labels, value)]."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = defaultdict(list)
    for line in text.splitlines():
        match = LINE.match(line)
        if match and not line.startswith("#"):
            out[match[1]].append((dict(LABEL.findall(match[2] or "")), float(match[3])))
    return out


def series_name(name: str) -> str:
    return prometheus_name(name) + ("_count" if CATALOG[name].kind == "histogram" else "")


def values(seen, name: str, **labels) -> list[float]:
    """Latest value of every series of `name` in this run whose labels include `labels`."""
    return [v for key, v in seen.get(series_name(name), {}).items()
            if dict(key).get("run") == RUN and all(dict(key).get(k) == want for k, want in labels.items())]


def sanity_problems(seen) -> list[str]:
    """What is still missing or out of range (empty when every metric is in and sane)."""
    problems = [f"{name}: not seen" for name in CATALOG if not values(seen, name)]
    checks = {
        "rollout_acceptance_length": lambda v: 1.0 <= v <= K_MAX + 1,
        "rollout_acceptance_rate": lambda v: 0.0 <= v <= 1.0,
        "rollout_chosen_k": lambda v: 0.0 <= v <= K_MAX,
        "rollout_tokens_per_s": lambda v: v > 0, "rollout_tokens": lambda v: v > 0,
        "step_acceptance_length": lambda v: 1.0 <= v <= K_MAX + 1, "step_tokens_per_s": lambda v: v > 0,
        "step_seconds": lambda v: 0.0 <= v < 600, "learner_seconds": lambda v: 0.0 <= v < 600,
        "step_reward_mean": lambda v: 0.0 <= v <= 1.0, "reward_score_mean": lambda v: 0.0 <= v <= 1.0,
        "policy_version": lambda v: v >= 1, "actor_policy_version": lambda v: v >= 0,
        "queue_depth": lambda v: v >= 0, "queue_in_flight": lambda v: v >= 0,
        "reward_errors": lambda v: v == 0, "actor_restarts": lambda v: v == 0, "rejected_messages": lambda v: v == 0,
        "staleness": lambda v: v > 0, "step_staleness_max": lambda v: v == 0,
        "learner_stat": math.isfinite,
    }
    for name, ok in checks.items():
        problems += [f"{name}: {v} out of range" for v in values(seen, name) if not ok(v)]
    if values(seen, "step_seconds") and not any(v > 0 for v in values(seen, "step_seconds", phase="step")):
        problems.append("step_seconds{phase=step}: no positive step time")
    # Synchronous run: every trained group has staleness 0, so the first bucket holds them all.
    buckets = seen.get(prometheus_name("staleness") + "_bucket", {})
    first = [v for key, v in buckets.items() if dict(key).get("run") == RUN and dict(key)["le"] == "0.5"]
    if values(seen, "staleness") and first != values(seen, "staleness"):
        problems.append(f"staleness: {first} in the 0 bucket of {values(seen, 'staleness')}")
    return problems


def job_state(head, job_id: str) -> str:
    """'succeeded', 'failed', 'stopped', or '' while the job is pending or running (the CLI says it on stderr)."""
    done = subprocess.run([RAY, "job", "status", "--address", head.address, job_id], env=head.env,
                          capture_output=True, text=True)
    match = re.search(rf"Job '{job_id}' (succeeded|failed|stopped)", done.stdout + done.stderr, re.IGNORECASE)
    return match[1].lower() if match else ""


def cluster_listeners(session_id: int) -> list[str]:
    """`ss` lines of the TCP sockets listened on by this cluster's processes: the head's session and every
    descendant (the job's driver and its actors' workers included)."""
    table = [tuple(map(int, line.split())) for line in
             subprocess.run(["ps", "-eo", "pid=,ppid=,sid="], capture_output=True, text=True).stdout.splitlines()]
    pids = {pid for pid, _, sid in table if sid == session_id}
    while True:
        grown = pids | {pid for pid, ppid, _ in table if ppid in pids}
        if grown == pids:
            break
        pids = grown
    lines = subprocess.run(["ss", "-tlnpH"], capture_output=True, text=True).stdout.splitlines()
    return [line for line in lines if any(int(pid) in pids for pid in re.findall(r"pid=(\d+)", line))]


def is_loopback(line: str) -> bool:
    return re.search(r"\s(127\.0\.0\.1|\[::1\]|\[::ffff:127\.0\.0\.1\]):\d+\s", line) is not None


@pytest.mark.slow
def test_a_ray_job_exports_every_metric_with_sane_values_on_the_prometheus_endpoint(head, tiny_overrides):
    job_id = f"rs-metrics-{secrets.token_hex(4)}"
    runtime_env = {"env_vars": {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
                                "TORCH_EXTENSIONS_DIR": str(REPO / ".cache" / "torch_extensions")}}
    submit = [RAY, "job", "submit", "--address", head.address, "--submission-id", job_id, "--no-wait",
              "--working-dir", ".", "--runtime-env-json", json.dumps(runtime_env), "--", "rollspec", "train",
              "--config", "configs/tiny.yaml", *tiny_overrides, f"run.name={RUN}", "algorithm.steps=30",
              "rollout.depth=adaptive", f"rollout.k={K_MAX}", "draft_refresh.enabled=true"]
    deadline = time.monotonic() + 120
    while True:
        done = subprocess.run(submit, cwd=REPO, env=head.env, capture_output=True, text=True, timeout=300)
        # The job API answers before the head's dashboard agent is up; the submission is refused then.
        if "No available agent to submit job" not in done.stderr or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    seen: dict[str, dict] = defaultdict(dict)  # name -> labels -> latest value, over every scrape
    listeners: dict[str, str] = {}  # every listening socket seen while the job ran: address -> ss line
    state, deadline = "", time.monotonic() + 900
    while time.monotonic() < deadline:
        for name, rows in scrape(head.metrics_port).items():
            for labels, value in rows:
                key = tuple(sorted((k, v) for k, v in labels.items() if k not in ("WorkerId", "otel_scope_name")))
                seen[name][key] = value
        listeners.update((line.split()[3], line) for line in cluster_listeners(head.session_id))
        state = job_state(head, job_id)
        if not sanity_problems(seen) or state:
            break
        time.sleep(1.0)
    logs = subprocess.run([RAY, "job", "logs", "--address", head.address, job_id], env=head.env,
                          capture_output=True, text=True).stdout
    assert sanity_problems(seen) == [], logs[-3000:]
    for name in CATALOG:  # shown with `pytest -s`: what the endpoint held
        print(series_name(name), sorted(values(seen, name))[:3], "...", sorted(values(seen, name))[-2:])
    assert [line for line in listeners.values() if not is_loopback(line)] == []
    owners = {name for line in listeners.values() for name in re.findall(r'\(\("([^"]+)"', line)}
    print(f"{len(listeners)} listening sockets, all on loopback, of", sorted(owners))
    # The sockets checked include the driver (broker) and every kind of actor, not only Ray's own daemons.
    assert {"rollspec", "ray::RolloutAct", "ray::RewardActo", "ray::FeedingLea", "ray::DraftRefre", "raylet",
            "gcs_server"} <= owners, owners
    while not state and time.monotonic() < deadline:
        time.sleep(2)
        state = job_state(head, job_id)
    assert state == "succeeded", logs[-3000:]
