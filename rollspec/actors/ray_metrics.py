"""Per-step metrics as Ray gauges (Prometheus on the node's metrics port, shown on the Ray dashboard
as `ray_rollspec_*`). Set from the driver after every learner step; each gauge carries the run name."""

from ray.util.metrics import Gauge

GAUGES = {
    "reward_mean": "mean reward of the samples trained in the last step",
    "acceptance_length": "tokens emitted per verify step (mean over the last step's groups)",
    "rollout_tokens_per_s": "rollout tokens per second of engine time",
    "step_s": "wall time of the last learner step",
    "generate_s": "generation phase of the last step",
    "learner_wait_s": "time the learner waited for a full batch",
    "train_s": "optimizer step time",
    "publish_s": "weight gather and publish time",
    "weight_sync_s": "time until every rollout actor held the new policy",
    "staleness_max": "largest step - policy version among trained groups",
    "policy_version": "latest policy version",
    "draft_version": "latest draft version",
}


class StepGauges:
    """One gauge per metric above, tagged with the run."""

    def __init__(self, run: str):
        self._run = {"run": run}
        self._gauges = {name: Gauge(f"rollspec_{name}", description=text, tag_keys=("run",))
                        for name, text in GAUGES.items()}

    def record(self, metrics: dict) -> None:
        """Set every gauge whose metric is in `metrics`."""
        for name, gauge in self._gauges.items():
            if name in metrics:
                gauge.set(float(metrics[name]), tags=self._run)
