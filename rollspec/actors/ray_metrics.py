"""Live metrics through `ray.util.metrics`: shown on the Ray dashboard and on each node's Prometheus
endpoint as `ray_rollspec_*` (see metric_catalog.py for the list, metric_samples.py for the values).

Every process records its own: rollout, reward and draft-refresh actors from their loop threads
(`PeriodicExport`), learner ranks after each step, the driver after each step and between steps.
"""

import time
from collections.abc import Callable, Iterable

from ray.util.metrics import Counter, Gauge, Histogram

from rollspec.actors.metric_catalog import CATALOG, STALENESS_BOUNDARIES, full_name
from rollspec.actors.metric_samples import Sample, fleet_samples, staleness_observations, step_samples

EXPORT_EVERY_S = 2.0
"""How often an actor loop records its metrics. Ray ships them to the node's agent on its own
interval (a few seconds); recording more often only costs CPU on the hot loop."""


class RaySink:
    """Records samples into Ray metrics declared from the catalog, every one tagged with the run.

    A counter's sample is the running total; Ray counters take increments, so the sink keeps the last
    total per tag set and adds the difference (never negative: a total that went down is skipped).
    """

    def __init__(self, run: str):
        self._run = run
        self._metrics: dict[str, Gauge | Counter | Histogram] = {}
        self._totals: dict[tuple, float] = {}

    def _metric(self, name: str):
        metric = self._metrics.get(name)
        if metric is None:
            spec = CATALOG[name]
            if spec.kind == "gauge":
                metric = Gauge(full_name(name), description=spec.help, tag_keys=spec.tags)
            elif spec.kind == "counter":
                metric = Counter(full_name(name), description=spec.help, tag_keys=spec.tags)
            else:
                metric = Histogram(full_name(name), description=spec.help, boundaries=list(STALENESS_BOUNDARIES),
                                   tag_keys=spec.tags)
            self._metrics[name] = metric
        return metric

    def record(self, samples: Iterable[Sample]) -> None:
        """Set gauges, advance counters to the given totals, observe histogram values."""
        for name, value, tags in samples:
            metric, tags = self._metric(name), {"run": self._run, **tags}
            kind = CATALOG[name].kind
            if kind == "gauge":
                metric.set(float(value), tags=tags)
            elif kind == "histogram":
                metric.observe(float(value), tags=tags)
            else:
                key = (name, tuple(sorted(tags.items())))
                delta = float(value) - self._totals.get(key, 0.0)
                self._totals[key] = max(float(value), self._totals.get(key, 0.0))
                if delta > 0:
                    metric.inc(delta, tags=tags)


class PeriodicExport:
    """Called on every loop iteration; records `samples_of(status())` at most every `every_s`."""

    def __init__(self, sink: RaySink, status: Callable[[], dict], samples_of: Callable[[dict], list[Sample]],
                 every_s: float = EXPORT_EVERY_S):
        self._sink, self._status, self._samples_of, self._every_s = sink, status, samples_of, every_s
        self._next = 0.0

    def tick(self) -> None:
        """Export if `every_s` has passed since the last export."""
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self._every_s
        self._sink.record(self._samples_of(self._status()))


class StepGauges:
    """The driver's metrics: per learner step (`record`) and between steps (`record_fleet`)."""

    def __init__(self, run: str, every_s: float = EXPORT_EVERY_S):
        self._sink = RaySink(run)
        self._every_s = every_s
        self._next = 0.0

    def is_due(self) -> bool:
        """True at most once per `every_s` (the controller polls far more often than metrics need)."""
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self._every_s
        return True

    def record(self, metrics: dict) -> None:
        """Step gauges, queue depths and one staleness observation per trained group."""
        self._sink.record(step_samples(metrics))
        self._sink.record(("staleness", s, {}) for s in staleness_observations(metrics))

    def record_fleet(self, queues: dict[str, dict], restarts: dict[str, int], dropped: dict[str, int],
                     broker_rejected: dict[str, int]) -> None:
        """Queue depths and in-flight items, actor restarts, dropped groups, the broker's rejections."""
        self._sink.record(fleet_samples(queues, restarts, dropped, broker_rejected))
