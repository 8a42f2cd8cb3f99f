"""The depth scheduler's own thread CPU per engine step, this tree's against another revision's, on identical decisions.

    .venv/bin/python -m bench.scheduler_cost_pair --base <rev> [--drafter eagle] [--batch 1] [--runs 6]

Two schedulers (bench/scheduler_versions.load_scheduler: `base` at the revision, `branch` from this tree) on one
start-up profile sit behind one depth policy (`PairedSchedulers`) in one engine: every call goes to both, in
alternating order (the first after the engine's step runs with the colder caches), and the engine runs base's
answer; a mismatch is counted (the scheduler's speed-ups must move no decision: test_same_decisions.py).
Each call's thread CPU is charged to its kind: a choice that planned (its standing choice replaced), another choice,
an observation that took the full path (a record made) or kept the step, a plain lease. Lockstep rate ratios
(bench/scheduler_versions) cannot resolve differences of ~0.1-0.5% of a step; this reads them directly.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import time

CLOCK = time.thread_time_ns  # ~0.4 us a call here, charged alike to both


class PairedSchedulers:
    """A depth policy asking two schedulers everything; the engine sees base's answers (module doc)."""

    def __init__(self, base, branch) -> None:
        self.schedulers = (base, branch)
        self.ns = (collections.Counter(), collections.Counter())  # thread CPU by call kind, per scheduler
        self.num_calls = 0
        self.num_mismatches = 0

    def _ask(self, name: str, *args):
        self.num_calls += 1
        out = [None, None]
        for i in ((0, 1) if self.num_calls % 2 else (1, 0)):
            scheduler = self.schedulers[i]
            reuse, num_steps = scheduler._reuse, scheduler._stats.num_steps
            start = CLOCK()
            out[i] = getattr(scheduler, name)(*args)
            spent = CLOCK() - start
            if name == "choose_depth":
                name_i = "plan" if scheduler._reuse is not reuse else "choose"
            else:
                name_i = "observe_full" if name == "observe" and scheduler._stats.num_steps != num_steps else name
            self.ns[i][name_i] += spent
        return out

    def choose_depth(self, batch_size: int, catch_up_tokens: int = 0) -> int:
        base, branch = self._ask("choose_depth", batch_size, catch_up_tokens)
        self.num_mismatches += base != branch
        return base

    def plain_lease(self):
        return self._ask("plain_lease")[0]

    def observe(self, *args) -> None:
        self._ask("observe", *args)

    @property
    def stats(self):
        return self.schedulers[0].stats

    @property
    def history(self):
        return self.schedulers[0].history

    @property
    def cost_model(self):
        return self.schedulers[0].cost_model


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True)
    parser.add_argument("--drafter", default="eagle", choices=["draft_model", "eagle"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--runs", type=int, default=6)
    return parser.parse_args()


def main() -> None:
    args = _args()
    import torch

    from bench.engine_runs import Workload
    from bench.scheduler import setting
    from bench.scheduler_runs import adaptive_scheduler, run_depth, step_profile
    from bench.scheduler_versions import load_scheduler
    from rollspec import scheduler as branch
    from rollspec.models.zoo import ensure_zoo

    torch.set_num_threads(1)
    _, size, num_prompts, _ = setting(args.batch, False)
    workload = Workload.from_zoo(ensure_zoo(), batch=size, temperature=1.0, max_new_tokens=160, num_prompts=num_prompts)
    profile = step_profile(workload, args.drafter)
    pair = PairedSchedulers(*(adaptive_scheduler(workload, package.profiled_costs(profile), package)
                              for package in (load_scheduler(args.base), branch)))
    run_depth(workload, args.drafter, scheduler=pair)  # untimed warm-up
    for counter in pair.ns:
        counter.clear()
    per_step: tuple[list[float], list[float]] = ([], [])
    num_steps = 0
    for _ in range(args.runs):
        before = [sum(counter.values()) for counter in pair.ns]
        run = run_depth(workload, args.drafter, scheduler=pair)
        num_steps += run["num_steps"]
        for i, counter in enumerate(pair.ns):
            per_step[i].append((sum(counter.values()) - before[i]) / 1e3 / run["num_steps"])
    print(f"{args.drafter} B = {size}: {num_steps} steps, {pair.num_mismatches} mismatched choices")
    for label, counter, runs in zip(("base", "branch"), pair.ns, per_step):
        kinds = ", ".join(f"{kind} {ns / 1e3 / num_steps:.1f}" for kind, ns in sorted(counter.items()))
        print(f"  {label}: {sum(counter.values()) / 1e3 / num_steps:.1f} us a step ({kinds}); runs "
              f"{[round(x, 1) for x in runs]}")
    ratios = [b / a for a, b in zip(*per_step)]
    print(f"  branch / base per run: median {statistics.median(ratios):.3f} {[round(r, 3) for r in ratios]}")


if __name__ == "__main__":
    main()
