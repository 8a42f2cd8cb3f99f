"""Group rollouts with and without shared prompt prefill (engine/shared_prompts.py): GRPO's
`--group` samples per prompt, `--prompts` prompts, through one engine of `--batch` rows, plain
decoding, the zoo policy, 1 thread; the two settings interleaved over `--repeats`, tokens per
thread-CPU second (the engine's work, robust to co-tenants) and per wall second, median.
Both settings must produce the same tokens (checked).

    .venv/bin/python -m bench.shared_prefill [--batch 64] [--prompts 32] [--group 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
from datetime import date
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "shared_prefill.json"


def _run(workload, base, group: int, share: bool) -> tuple[float, float, list]:
    from rollspec.engine.depth import FixedDepth
    from rollspec.engine.engine import Engine

    config = dataclasses.replace(workload.engine_config(), share_prompt_prefill=share)
    engine = Engine(workload.policy.model, config, depth=FixedDepth(0))
    requests = [dataclasses.replace(r, request_id=f"{r.request_id}/{j}", group_id=r.request_id,
                                    params=dataclasses.replace(r.params, seed=1000 * i + j))
                for i, r in enumerate(base) for j in range(group)]
    start, start_thread = time.perf_counter(), time.thread_time()
    completions = engine.generate(requests)
    elapsed_thread, elapsed = time.thread_time() - start_thread, time.perf_counter() - start
    tokens = sum(len(c.token_ids) for c in completions)
    return tokens / elapsed_thread, tokens / elapsed, [c.token_ids for c in completions]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    import torch

    from bench.engine_runs import Workload
    from rollspec.models.zoo import ensure_zoo

    torch.set_num_threads(1)
    workload = Workload.from_zoo(ensure_zoo(), batch=args.batch, temperature=1.0, max_new_tokens=160,
                                 num_prompts=args.prompts)
    base = list(workload.requests())[: args.prompts]
    load_start = os.getloadavg()[0]
    runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    outputs = {}
    for _ in range(args.repeats):
        for share in (False, True):
            tcpu, wall, outputs[share] = _run(workload, base, args.group, share)
            runs[share].append((tcpu, wall))
    if outputs[True] != outputs[False]:
        raise SystemExit("shared and separate prefills generated different tokens")
    rows = {("shared" if share else "separate"): {
        "tokens_per_tcpu_s": statistics.median(t for t, _ in values), "tokens_per_s": statistics.median(w for _, w in values),
        "tcpu_runs": [round(t, 1) for t, _ in values]} for share, values in runs.items()}
    summary = {"speedup_tcpu": rows["shared"]["tokens_per_tcpu_s"] / rows["separate"]["tokens_per_tcpu_s"],
               "speedup_wall": rows["shared"]["tokens_per_s"] / rows["separate"]["tokens_per_s"]}
    result = {"command": "python -m bench.shared_prefill " + " ".join(
                  f"--{k} {v}" for k, v in vars(args).items() if k != "out"),
              "date": date.today().isoformat(), "machine": f"{os.cpu_count()} CPU cores, no GPU, 1 torch thread",
              "load_1m": [round(load_start, 2), round(os.getloadavg()[0], 2)], "rows": rows, "summary": summary}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
