"""The Grafana dashboard for rollspec's live metrics, built from the metric catalog.

    python -m rollspec.launch.grafana monitoring/grafana/rollspec.json

writes the shipped dashboard (a test checks the shipped file equals what this builds). One panel per
metric, grouped in rows as the catalog groups them, plus a few derived panels (acceptance from the
counters, drafts accepted per second). Every query filters on the `run` variable and aggregates away
Ray's per-process labels (WorkerId), so an actor that restarted stays one line.
"""

import json
import sys
from pathlib import Path

from rollspec.actors.metric_catalog import CATALOG, prometheus_name

GROUPS = (("step", "Learner steps (driver)"), ("speculation", "Speculation"), ("throughput", "Rollout throughput"),
          ("reward", "Reward"), ("learner", "Learner ranks"), ("drafter", "Draft refresh"),
          ("versions", "Weight versions"), ("transport", "Queues"), ("health", "Health"))
RUN = 'run=~"$run"'
WIDTH, HEIGHT = 8, 8
UID = "rollspec-live"


def _target(expr: str, legend: str, ref: str = "A", **extra) -> dict:
    return {"datasource": {"type": "prometheus", "uid": "${datasource}"}, "expr": expr, "legendFormat": legend,
            "refId": ref, **extra}


def metric_targets(name: str) -> list[dict]:
    """The queries of one metric's panel."""
    spec, series = CATALOG[name], prometheus_name(name)
    labels = [t for t in spec.tags if t != "run"]
    by = ", ".join(["run", *labels])
    legend = " ".join("{{%s}}" % t for t in ["run", *labels])
    if name == "rejected_messages":  # the per-channel total row, so reasons are not counted twice
        return [_target(f'max by ({by}) ({series}{{{RUN}, reason!="total"}})', legend),
                _target(f'sum by (run, actor, channel) (max by ({by}) ({series}{{{RUN}, reason="total"}}))',
                        "{{run}} {{actor}} {{channel}} total", "B")]
    if spec.kind == "counter":
        return [_target(f"sum by ({by}) (rate({series}{{{RUN}}}[$__rate_interval]))", legend + " /s")]
    if spec.kind == "histogram":
        return [_target(f"sum by (le) (increase({series}_bucket{{{RUN}}}[$__range]))", "{{le}}", format="heatmap",
                        instant=True),
                _target(f"histogram_quantile(0.99, sum by (le) (rate({series}_bucket{{{RUN}}}[$__rate_interval])))",
                        "p99", "B")]
    return [_target(f"max by ({by}) ({series}{{{RUN}}})", legend)]


def derived_panels() -> list[tuple[str, str, list[dict], str]]:
    """(group, title, targets, unit) of panels computed from several metrics."""
    accepted, verify = prometheus_name("rollout_accepted_tokens"), prometheus_name("rollout_verify_steps")
    drafted = prometheus_name("rollout_drafted_tokens")
    rate = "sum by (run, actor) (rate({}{{%s}}[$__rate_interval]))" % RUN
    return [("speculation", "acceptance length from the counters (1 + accepted / verify steps)",
             [_target(f"1 + {rate.format(accepted)} / {rate.format(verify)}", "{{run}} {{actor}}")], "short"),
            ("speculation", "draft acceptance rate (accepted / drafted)",
             [_target(f"{rate.format(accepted)} / {rate.format(drafted)}", "{{run}} {{actor}}")], "percentunit")]


def _panel(panel_id: int, title: str, description: str, targets: list[dict], unit: str, pos: dict,
           kind: str) -> dict:
    panel = {"id": panel_id, "title": title, "description": description, "gridPos": pos,
             "datasource": {"type": "prometheus", "uid": "${datasource}"}, "targets": targets,
             "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
             "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}}}
    if kind == "histogram":
        panel.update(type="bargauge", options={"displayMode": "gradient", "orientation": "vertical",
                                               "reduceOptions": {"calcs": ["lastNotNull"]}})
        panel["targets"] = targets[:1]  # the quantile is its own panel below
    elif title.startswith("step_seconds"):
        panel.update(type="timeseries")
        panel["fieldConfig"]["defaults"]["custom"] = {"stacking": {"mode": "normal"}, "drawStyle": "bars",
                                                      "fillOpacity": 80}
        panel["fieldConfig"]["overrides"] = [{"matcher": {"id": "byRegexp", "options": ".* step$"},
                                              "properties": [{"id": "custom.stacking", "value": {"mode": "none"}},
                                                             {"id": "custom.drawStyle", "value": "line"}]}]
    else:
        panel["type"] = "timeseries"
    return panel


def build_dashboard() -> dict:
    """The dashboard as Grafana's JSON model."""
    panels, panel_id, y = [], 1, 0
    derived = derived_panels()
    for group, row_title in GROUPS:
        panels.append({"id": panel_id, "type": "row", "title": row_title, "collapsed": False, "panels": [],
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}})
        panel_id, y = panel_id + 1, y + 1
        items = [(name, f"{name}", spec.help, metric_targets(name), spec.unit, spec.kind)
                 for name, spec in CATALOG.items() if spec.group == group]
        items += [(None, title, title, targets, unit, "derived") for g, title, targets, unit in derived if g == group]
        if group == "step":
            series = prometheus_name("staleness")
            items.append((None, "staleness p50 / p99", "quantiles of the trained groups' staleness",
                          [_target(f"histogram_quantile({q}, sum by (le) (rate({series}_bucket{{{RUN}}}"
                                   f"[$__rate_interval])))", f"p{int(q * 100)}", ref)
                           for q, ref in ((0.5, "A"), (0.99, "B"))], "short", "derived"))
        for i, (_, title, description, targets, unit, kind) in enumerate(items):
            pos = {"h": HEIGHT, "w": WIDTH, "x": (i % 3) * WIDTH, "y": y + (i // 3) * HEIGHT}
            panels.append(_panel(panel_id, title, description, targets, unit, pos, kind))
            panel_id += 1
        y += -(-len(items) // 3) * HEIGHT
    run_query = f"label_values({prometheus_name('policy_version')}, run)"
    return {
        "uid": UID, "title": "rollspec: live RL rollouts with speculative decoding", "tags": ["rollspec", "ray"],
        "timezone": "browser", "schemaVersion": 39, "version": 1, "refresh": "10s", "editable": True,
        "time": {"from": "now-1h", "to": "now"}, "graphTooltip": 1, "panels": panels,
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "hide": 0, "label": "Prometheus",
             "current": {}},
            {"name": "run", "type": "query", "label": "run (run.name)",
             "datasource": {"type": "prometheus", "uid": "${datasource}"}, "definition": run_query,
             "query": {"query": run_query, "refId": "run"}, "includeAll": True, "multi": True, "allValue": ".*",
             "refresh": 2, "current": {"text": ["All"], "value": ["$__all"]}},
        ]},
        "annotations": {"list": []}, "links": [],
    }


def dashboard_json() -> str:
    """The dashboard as the text shipped in monitoring/grafana/rollspec.json."""
    return json.dumps(build_dashboard(), indent=1) + "\n"


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(dashboard_json())
