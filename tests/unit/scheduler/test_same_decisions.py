"""Speed-ups of the scheduler's own CPU that must not move a decision: a seeded closed-loop run replayed call by call
through the scheduler package as of REFERENCE_REV (bench/scheduler_versions.load_scheduler) chooses the same depths
and records the same predictions, bit for bit.

REFERENCE_REV is the last tree whose decisions moved on purpose: wt-trial's trials from k > 0 charged what they
realized, forgotten at a weight change (before it: wt-gap4's plain price that follows the load, wt-arb's
NeighbourArbiter). A later change that means to move decisions moves the reference with it.
"""

import subprocess
from pathlib import Path

import numpy as np
import pytest

from rollspec import scheduler as current
from rollspec.scheduler import CatchUpCost, DepthConfig, DepthScheduler, sample_num_accepted

REFERENCE_REV = "981d382023ccf925d61f04dd8d02e507f9d5c21d"
REPO = Path(__file__).resolve().parents[3]
CATCH_UP = {1: 2e-5, 16: 6e-5, 64: 2e-4}
FIRST_ALPHAS = [1.0, 0.95, 0.9, 0.8, 0.8, 0.7, 0.7, 0.6]


def _phase(step: int) -> tuple[int, list[float]]:
    """Rows wanted and acceptance per position at `step`: B = 1 (first steps apart), then a batch of 6 whose
    acceptance falls and recovers, then 16 rows that drain."""
    if step < 900:
        return 1, [0.85, 0.8, 0.8, 0.75, 0.7, 0.7, 0.6, 0.6]
    if step < 1500:
        return 6, [0.3] * 8 if 1150 <= step < 1300 else [0.8] * 8
    return (16 if step < 1700 else 0), [0.7] * 8


def _closed_loop(scheduler, device, seed: int, num_steps: int) -> tuple[list[tuple], list[int]]:
    """Drive `scheduler` as the engine does (its plain lease honoured, a catch-up width per step, admissions, finishes,
    a weight change); returns the calls made and the depths it chose."""
    rng = np.random.default_rng(seed)
    rows: list[list] = []  # [tokens left, is first step]
    calls, chosen, lease_steps, lease_min, last_k, plain_run = [], [], 0, 0, 0, 0
    for step in range(num_steps):
        wanted, alphas = _phase(step)
        while len(rows) < wanted:
            rows.append([int(rng.integers(4, 40)), True])
        if not rows:
            break
        b = len(rows)
        if step == 700:
            calls.append(("w",))
            scheduler.notify_weights_changed()
        if lease_steps > 0 and b >= lease_min:
            lease_steps, k = lease_steps - 1, 0
        else:
            width = 40 if any(first for _, first in rows) else (last_k + 1 if last_k else plain_run + 1)
            calls.append(("c", b, width))
            k = scheduler.choose_depth(b, width)
            chosen.append(k)
            if k == 0:
                calls.append(("l",))
                lease = scheduler.plain_lease()
                lease_steps, lease_min = lease.steps, lease.min_batch_size
        accepted = [int(sample_num_accepted(rng, FIRST_ALPHAS if first else alphas, k, 1)[0]) for _, first in rows]
        noise = np.exp(rng.normal(0.0, 0.1, size=2))
        draft_s, target_s = device.drafting_s(b, k) * noise[0], device.target_s(b, k + 1) * noise[1]
        calls.append(("o", b, k, accepted, float(draft_s), float(target_s)))
        scheduler.observe(b, k, accepted, float(draft_s), float(target_s))
        for row, n in zip(rows, accepted):
            row[0], row[1] = row[0] - n - 1, False
        rows = [row for row in rows if row[0] > 0]
        last_k, plain_run = k, (0 if k else plain_run + 1)
    return calls, chosen


def _replay(scheduler, calls: list[tuple]) -> list[int]:
    chosen = []
    for name, *args in calls:
        if name == "c":
            chosen.append(scheduler.choose_depth(*args))
        elif name == "o":
            scheduler.observe(*args)
        elif name == "l":
            scheduler.plain_lease()
        else:
            scheduler.notify_weights_changed()
    return chosen


def _reference_package():
    try:
        subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{REFERENCE_REV}^{{commit}}"], check=True,
                       capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"reference revision {REFERENCE_REV} not in this checkout")
    from bench.scheduler_versions import load_scheduler
    return load_scheduler(REFERENCE_REV, REPO)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_scheduler_decides_as_the_reference_revision_on_a_replayed_run(synthetic, seed):
    reference = _reference_package()
    device = synthetic.LinearDevice(target_fixed_s=6e-4, target_per_token_s=2e-5, draft_fixed_s=5e-5,
                                    draft_per_row_s=2e-6, draft_step_s=5e-5)
    target, draft = device.profile(max_batch_size=64, k_max=8)
    fixed = {b: device.draft_step_s for b in draft}

    def build(package):
        costs = package.CostModel.from_profile(target, draft, draft_fixed_s=fixed)
        return package.DepthScheduler(package.DepthConfig(), costs, package.CatchUpCost(CATCH_UP))

    scheduler = build(current)
    assert isinstance(scheduler, DepthScheduler) and isinstance(scheduler.config, DepthConfig)
    assert not isinstance(build(reference), DepthScheduler)  # a separate package, not this tree's
    calls, chosen = _closed_loop(scheduler, device, seed, num_steps=2200)
    old = build(reference)
    assert _replay(old, calls) == chosen
    assert len(set(chosen)) >= 4 and scheduler.stats.num_probes > 0 and 0 in chosen  # the run exercised the paths
    assert [d.as_metrics() for d in old.history] == [d.as_metrics() for d in scheduler.history]
    assert repr(old.stats) == repr(scheduler.stats)
    for b in (1, 6, 16):
        assert old.predicted_tokens_per_s(b).tolist() == scheduler.predicted_tokens_per_s(b).tolist()
    assert isinstance(scheduler.catch_up, CatchUpCost)
