"""Per-step cost of the native engine on the trained zoo: thread CPU time per step (less
sensitive to other jobs on a shared machine than wall time, not immune: they share caches and
memory bandwidth) and the torch ops a step dispatches, for plain decoding and for speculative
steps. Rows never stop early (no stop token), so every
measured step is a full-batch decode or verify step; acceptance past the zoo's EOS is not
representative, per-step cost is. This is the profile the engine's hot path is tuned against;
bench/engine.py measures the resulting throughput.

    .venv/bin/python -m bench.engine_step [--steps 40]
"""

from __future__ import annotations

import argparse
import statistics
import time

MAX_NEW_TOKENS = 120
CASES = (  # (batch, drafter, k)
    (16, None, 0), (1, None, 0), (1, "eagle", 4), (1, "draft_model", 2), (1, "draft_model", 4), (4, None, 0),
    (4, "eagle", 4), (4, "draft_model", 4))


def _engine(zoo, batch: int, drafter: str | None, k: int):
    """An engine holding `batch` sequences that never stop early (no stop token), so every
    measured step is a pure decode or verify step over a full batch."""
    import dataclasses

    from bench.engine_runs import Workload
    from rollspec.engine.depth import FixedDepth
    from rollspec.engine.drafters.build import build_drafter
    from rollspec.engine.engine import Engine

    workload = Workload.from_zoo(zoo, batch=batch, temperature=1.0, max_new_tokens=MAX_NEW_TOKENS, num_prompts=batch)
    config = workload.engine_config()
    path = {"draft_model": zoo.draft, "eagle": zoo.eagle}.get(drafter)
    built = build_drafter(drafter, policy=workload.policy, config=config, draft_path=path) if drafter else None
    engine = Engine(workload.policy.model, config, drafter=built, depth=FixedDepth(k))
    for request in workload.requests():
        engine.add_request(dataclasses.replace(request, params=dataclasses.replace(request.params, stop_token_ids=())))
    engine.step()  # admission (prefill) is not measured
    return engine


def _steps(engine, count: int):
    for _ in range(count):
        if len(engine.rows) < engine.max_batch_size or any(
                s.num_generated + engine.config.k_max + 1 >= MAX_NEW_TOKENS for s in engine.rows):
            return
        yield


def measure(zoo, batch: int, drafter: str | None, k: int, steps: int) -> dict:
    from torch.profiler import ProfilerActivity, profile

    engine = _engine(zoo, batch, drafter, k)
    cpu_ms = []
    for _ in _steps(engine, steps):
        start = time.thread_time()
        engine.step()
        cpu_ms.append(1e3 * (time.thread_time() - start))
    engine = _engine(zoo, batch, drafter, k)
    num_profiled = 0
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in _steps(engine, 10):
            engine.step()
            num_profiled += 1
    events = prof.key_averages()
    ops = sum(e.count for e in events if e.key.startswith("aten::"))
    syncs = sum(e.count for e in events if e.key in ("aten::_local_scalar_dense", "aten::nonzero"))
    return {"batch": batch, "drafter": drafter or "plain", "k": k, "cpu_ms_per_step": statistics.median(cpu_ms),
            "aten_ops_per_step": ops / num_profiled, "item_or_nonzero_per_step": syncs / num_profiled}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    import torch

    from rollspec.models.zoo import ensure_zoo

    torch.set_num_threads(1)
    zoo = ensure_zoo()
    for batch, drafter, k in CASES:
        row = measure(zoo, batch, drafter, k, args.steps)
        print(f"B={row['batch']:<3} {row['drafter']:>11} k={row['k']}: {row['cpu_ms_per_step']:6.2f} ms CPU/step, "
              f"{row['aten_ops_per_step']:6.0f} aten ops/step, {row['item_or_nonzero_per_step']:.0f} item/nonzero per step",
              flush=True)


if __name__ == "__main__":
    main()
