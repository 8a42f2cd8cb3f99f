"""The shipped Grafana dashboard: up to date with the metric catalog, a panel for every metric."""

import json
import re
from pathlib import Path

from rollspec.actors.metric_catalog import CATALOG, prometheus_name
from rollspec.launch.grafana import build_dashboard, dashboard_json

SHIPPED = Path(__file__).resolve().parents[3] / "monitoring" / "grafana" / "rollspec.json"


def test_the_shipped_dashboard_is_what_the_catalog_builds():
    """Regenerate with `python -m rollspec.launch.grafana monitoring/grafana/rollspec.json`."""
    assert SHIPPED.read_text() == dashboard_json()


def test_every_metric_has_a_panel_that_queries_it_for_the_selected_run():
    panels = [p for p in json.loads(SHIPPED.read_text())["panels"] if p["type"] != "row"]
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    for name in CATALOG:
        series = prometheus_name(name)
        if CATALOG[name].kind == "histogram":
            series += "_bucket"
        mine = [e for e in exprs if re.search(rf"\b{series}\{{", e)]
        assert mine, f"no panel queries {series}"
        assert all('run=~"$run"' in e for e in mine)
    assert all(e.count("(") == e.count(")") and e.count("{") == e.count("}") for e in exprs)


def test_panels_have_unique_ids_and_do_not_overlap():
    panels = build_dashboard()["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, p["title"]
        cells |= mine
