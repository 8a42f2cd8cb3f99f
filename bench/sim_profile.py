"""Measure the built-in engine on this CPU for the simulator's calibration (schema rollspec.sim.measured/v1).

    .venv/bin/python -m bench.sim_profile [--quick] [--out PATH]

1. Profile, as the live scheduler would at start-up: for every (B, k) of the scheduler's
   profile grid, B requests decode at fixed depth k with a draft-model drafter; each
   engine.step() is timed. Done with an 8- and a 160-token prompt: the engine pads attention
   to the longest row, so a step costs more as contexts grow (+30% at B = 32 from 30 to 180
   tokens), and the simulator interpolates between the two levels. c_draft(B) is the slope
   of drafting time over k (least squares); c_target(B, k + 1) the median step time minus
   k * c_draft(B), so the table reproduces every measured step total, bookkeeping included.
   Prefill(rows) is the first step's extra time at k = 0; the drafter's catch-up on newly
   admitted prompts is the first step's further extra at k > 0 (this engine's draft model pads
   that catch-up over every live row, so it follows the batch size). Acceptance per position is
   pooled from the k = k_max runs.
2. Drains: a batch with long-tailed lengths generated to completion, plain / fixed k /
   adaptive (the scheduler's DepthScheduler on a CostModel of the short-context profile),
   all rows at once (32 on 32 rows) and queued (48 on 16 rows).
3. Pipeline (engine in the loop): GRPO steps driven by the scheduler's AdmissionController,
   sync (staleness 0) and async (staleness 2) x plain and adaptive. The engine generates for
   real; learner, reward and weight sync are timers (their costs are inputs, not
   predictions), so this checks the rollout and overlap model.

Times are CPU seconds of the engine thread (torch uses one thread): on this shared 2-core
machine wall time swings 1.5x with other jobs. Even CPU time moves ~10% with load (shared
caches), so the three parts run interleaved, REPS times, and every number is the median of
its repetitions, profile and validation alike (a minimum would favour the many short profile
cells over the few long runs). The simulator then predicts 2 and 3 from 1.
"""

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "rollspec" / "sim" / "scenarios" / "tiny-cpu-measured.json"
MAX_SEQ_LEN = 256  # fixed: the engine's attention cost depends on the cache length it is sized for
PROMPT = (1, 2, 3, 4, 5, 6, 7, 8)
LONG_PROMPT = tuple(1 + i % 60 for i in range(160))  # profiles the cost level at ~180 cached tokens
K_MAX, FIXED_K = 8, 4
PROFILE_NEW_TOKENS = 40
LENGTHS = dict(mean=48.0, sigma=0.6, cap=160)
TRAINING = dict(prompts_per_step=4, group_size=8, reward_s=0.02, learner_fixed_s=0.3, learner_s_per_token=3e-4,
                weight_sync_s=0.1)


class _Recording:
    """A fixed depth that keeps every step's (batch size, draft seconds, target seconds)."""

    def __init__(self, k: int) -> None:
        self.k, self.steps = k, []

    def choose_depth(self, batch_size: int, catch_up_tokens: int = 0) -> int:
        return self.k

    def observe(self, batch_size, k, num_accepted, draft_time_s, target_time_s) -> None:
        self.steps.append((batch_size, draft_time_s, target_time_s))


def _models():
    import torch

    from rollspec.models.random_models import random_decoder, tiny_config

    torch.set_num_threads(1)
    policy_cfg = tiny_config(vocab_size=64, hidden_size=256, intermediate_size=768, num_layers=6, num_heads=4,
                             num_kv_heads=2, head_dim=64, max_position_embeddings=1024)
    draft_cfg = tiny_config(vocab_size=64, hidden_size=64, intermediate_size=128, num_layers=1, num_heads=2,
                            num_kv_heads=1, head_dim=32, max_position_embeddings=1024)
    # Small weights keep both distributions near uniform over 64 tokens, so a random drafter
    # is accepted often enough (~0.6 per position) for speculation to matter.
    return random_decoder(policy_cfg, seed=0, std=0.06), random_decoder(draft_cfg, seed=1, std=0.02)


def _engine(policy, draft, max_batch: int, depth, *, speculate: bool):
    from rollspec.engine.config import EngineConfig
    from rollspec.engine.drafters.draft_model import DraftModelDrafter
    from rollspec.engine.engine import Engine

    config = EngineConfig(max_batch_size=max_batch, max_seq_len=MAX_SEQ_LEN, k_max=K_MAX)
    drafter = DraftModelDrafter(draft, num_slots=max_batch, max_len=config.cache_len) if speculate else None
    return Engine(policy, config, drafter=drafter, depth=depth)


def _request(request_id: str, max_new_tokens: int, seed: int, prompt: tuple[int, ...] = PROMPT):
    from rollspec.engine.sampling_params import SamplingParams
    from rollspec.engine.sequence import Request

    return Request(request_id=request_id, prompt_ids=prompt, params=SamplingParams(max_new_tokens=max_new_tokens,
                                                                                   seed=seed))


def _profile_run(policy, draft, batch_size: int, k: int, seed: int, prompt: tuple[int, ...]):
    """Per step: CPU seconds, longest context before it, and the depth record; plus the completions."""
    depth = _Recording(k)
    engine = _engine(policy, draft, batch_size, depth, speculate=k > 0)
    for i in range(batch_size):
        engine.add_request(_request(f"r{i}", PROFILE_NEW_TOKENS, seed * 1000 + i, prompt))
    walls, longest, completions = [], [], []
    while engine.has_unfinished():
        # Context as the simulator counts it: prompt plus emitted tokens (the engine caches all but the last).
        longest.append(max((s.cache_len + 1 for s in engine.rows), default=0))
        start = time.thread_time()
        completions += engine.step()
        walls.append(time.thread_time() - start)
    return walls, longest, depth.steps, completions


def _profile_pass(policy, draft, prompt: tuple[int, ...], seed: int) -> dict:
    """One repetition of the profile grid at this prompt's context: per (B, k) median step and draft seconds."""
    from rollspec.scheduler import profile_points

    batch_sizes, qs = profile_points(32, K_MAX)
    out = {"step": {}, "draft": {}, "contexts": [], "first": {}, "drafted": np.zeros(K_MAX),
           "accepted": np.zeros(K_MAX)}
    for b in batch_sizes:
        for k in (q - 1 for q in qs):
            step_walls, longest, steps, completions = _profile_run(policy, draft, b, k, seed, prompt)
            # Step 0 admits (prefill); later steps count only while the batch is still full.
            full = [i for i in range(1, len(steps)) if steps[i][0] == b]
            out["step"][(b, k)] = statistics.median(step_walls[i] for i in full)
            # The engine reports wall-clock draft and verify times; their split scales the step's CPU time.
            out["draft"][(b, k)] = statistics.median(step_walls[i] * steps[i][1] / (steps[i][1] + steps[i][2])
                                                     for i in full)
            out["contexts"] += [longest[i] for i in full]
            # The first step admits (prefill) and, when speculating, the drafter catches up on the prompts.
            out["first"].setdefault(b, {})[k] = step_walls[0] - out["step"][(b, k)]
            if k == K_MAX:
                for c in completions:
                    out["drafted"] += c.stats.drafted_per_position
                    out["accepted"] += c.stats.accepted_per_position
    return out


def _level(passes: list[dict]) -> dict:
    """A cost level from the median of each cell over the repetitions."""
    cells = sorted(passes[0]["step"])
    step = {cell: statistics.median(p["step"][cell] for p in passes) for cell in cells}
    drafted = {cell: statistics.median(p["draft"][cell] for p in passes) for cell in cells}
    target, draft_s = [], []
    for b in sorted({b for b, _ in cells}):
        ks = np.array([k for bb, k in cells if bb == b], dtype=np.float64)
        per_k = np.array([drafted[(b, int(k))] for k in ks])
        slope = float(np.dot(ks, per_k) / np.dot(ks, ks))  # through the origin: k = 0 drafts nothing
        draft_s.append([b, slope])
        target += [[b, int(k) + 1, step[(b, int(k))] - k * slope] for k in ks]
    contexts = [c for p in passes for c in p["contexts"]]
    return {"context_tokens": float(statistics.median(contexts)), "target_s": target, "draft_s": draft_s}


def profile(short: list[dict], long: list[dict]) -> dict:
    """Cost tables at a short and a long context, prefill and acceptance per position (see the module docstring)."""
    batch_sizes = sorted(short[0]["first"])
    prefill = {b: max(0.0, statistics.median(p["first"][b][0] for p in short)) for b in batch_sizes}
    catch_up = {b: max(0.0, statistics.median(statistics.median(v for k, v in p["first"][b].items() if k)
                                              for p in short) - prefill[b]) for b in batch_sizes}
    reach = sum(p["accepted"] for p in short) / sum(p["drafted"] for p in short)  # P(position j accepted)
    alphas = [float(reach[0])] + [float(reach[j] / reach[j - 1]) for j in range(1, K_MAX)]
    cost = {"context_kind": "longest", "levels": [_level(short), _level(long)],
            "prefill_s": [[b, prefill[b]] for b in batch_sizes], "draft_admit_s": [[b, catch_up[b]] for b in batch_sizes]}
    return {"cost": cost, "acceptance": alphas}


def _depth_policy(kind: str, tables: dict):
    """The engine's depth policy; adaptive plans on the short-context profile, as a start-up profile would."""
    from rollspec.engine.depth import FixedDepth
    from rollspec.scheduler import CostModel, DepthConfig, DepthScheduler

    if kind == "plain":
        return FixedDepth(0)
    if kind == "fixed":
        return FixedDepth(FIXED_K)
    level = tables["levels"][0]
    cost = CostModel.from_profile({(b, q): s for b, q, s in level["target_s"]}, {b: s for b, s in level["draft_s"]})
    return DepthScheduler(DepthConfig(k_max=K_MAX), cost)


def measure_drain(policy, draft, tables: dict, kind: str, lengths: list[int], max_batch: int) -> float:
    engine = _engine(policy, draft, max_batch, _depth_policy(kind, tables), speculate=kind != "plain")
    requests = [_request(f"r{i}", n, 7000 + i) for i, n in enumerate(lengths)]
    start = time.thread_time()
    engine.generate(requests)
    return time.thread_time() - start


def drain_cases(rng: np.random.Generator) -> list[tuple[str, list[int], int]]:
    """(name, lengths, engine rows): 32 long-tailed responses on 32 rows, and 48 queued on 16 rows."""
    from rollspec.sim.lengths import LengthDistribution

    dist = LengthDistribution.lognormal(LENGTHS["mean"], LENGTHS["sigma"], LENGTHS["cap"])
    return [("drain32", dist.sample(rng, 32).tolist(), 32), ("queue48on16", dist.sample(rng, 48).tolist(), 16)]


def drain_pass(policy, draft, tables: dict, cases) -> dict[str, float]:
    return {f"{name}_{kind}": measure_drain(policy, draft, tables, kind, lengths, rows)
            for name, lengths, rows in cases for kind in ("plain", "fixed", "adaptive")}


class _EngineInTheLoopPipeline:
    """GRPO steps with the real engine generating and learner, reward and weight sync as timers.

    The clock advances by the engine's CPU time per step (the time a dedicated core would
    take: wall time on this shared machine varies 1.5x with other jobs) and jumps to the next
    timer when the engine has nothing to do.

    Mirrors sim/pipeline.py's event rules (the same AdmissionController, leasing prompts
    only to free engine rows, oldest-first batches, the replica paused while weights load)
    so the comparison tests the simulator's rollout and overlap model, not two policies.
    """

    def __init__(self, policy, draft, doc: dict, kind: str, max_staleness: int, rng: np.random.Generator) -> None:
        from rollspec.engine.weights import native_to_hf
        from rollspec.scheduler import AdmissionConfig, AdmissionController

        self.t = doc["training"]
        self.rows = doc["max_num_seqs"]
        self.depth = _depth_policy(kind, doc["cost"])
        self.engine = _engine(policy, draft, self.rows, self.depth, speculate=kind != "plain")
        self.weights = native_to_hf(policy)
        self.admission = AdmissionController(AdmissionConfig(
            max_staleness=max_staleness, prompts_per_step=self.t["prompts_per_step"], group_size=self.t["group_size"]))
        self.lengths, self.rng = doc["response_lengths"], rng
        self.version = self.next_step = self.in_flight = self.num_requests = 0
        self.dispatched: dict[str, int] = {}
        self.dispatched_lengths: list[int] = []
        self.scoring: list[tuple[float, int, int]] = []
        self.buffer: list[tuple[int, int]] = []
        self.compute_end = math.inf
        self.step_ends: list[float] = []
        self.clock = 0.0

    def now(self) -> float:
        return self.clock

    def _timed(self, fn, *args):
        start = time.thread_time()
        out = fn(*args)
        self.clock += time.thread_time() - start
        return out

    def run(self, num_steps: int) -> list[float]:
        while len(self.step_ends) < num_steps:
            if self.now() >= self.compute_end:
                self.clock += self.t["weight_sync_s"]  # the engine pauses while new weights load
                self._timed(self.engine.update_policy, self.weights, self.next_step)
                if hasattr(self.depth, "notify_weights_changed"):
                    self.depth.notify_weights_changed()
                self.version, self.compute_end = self.next_step, math.inf
                self.step_ends.append(self.now())
            ready = [item for item in self.scoring if item[0] <= self.now()]
            self.scoring = [item for item in self.scoring if item[0] > self.now()]
            self.buffer += [(v, n) for _, v, n in ready]
            self._start_learner()
            self._dispatch()
            if self.engine.has_unfinished():
                for c in self._timed(self.engine.step):
                    self.scoring.append((self.now() + self.t["reward_s"], self.dispatched.pop(c.request_id),
                                         len(c.token_ids)))
                    self.in_flight -= 1
            else:
                self.clock = max(self.clock, min([self.compute_end] + [item[0] for item in self.scoring]))
        return self.step_ends

    def _start_learner(self) -> None:
        if self.compute_end < math.inf:
            return
        versions = [v for v, _ in self.buffer]
        take, stale = self.admission.select_batch(versions, self.next_step)
        for i in stale:
            self.admission.admit(versions[i], self.next_step)
        if len(take) < self.admission.trajectories_per_step:
            take = []
        tokens = sum(self.buffer[i][1] + len(PROMPT) for i in take if self.admission.admit(versions[i], self.next_step))
        gone = set(take) | set(stale)
        self.buffer = [item for i, item in enumerate(self.buffer) if i not in gone]
        if take:
            self.compute_end = self.now() + self.t["learner_fixed_s"] + self.t["learner_s_per_token"] * tokens
            self.next_step += 1

    def _dispatch(self) -> None:
        allowed = self.admission.num_prompts_to_dispatch(
            policy_version=self.version, next_learner_step=self.next_step, num_in_flight=self.in_flight,
            num_buffered=len(self.scoring) + len(self.buffer))
        free_rows = self.rows - len(self.engine.rows) - len(self.engine.waiting)
        group = self.t["group_size"]
        for _ in range(min(allowed, -(-max(0, free_rows) // group)) * group):
            request_id = f"p{self.num_requests}"
            length = int(self.rng.choice(self.lengths))
            self.engine.add_request(_request(request_id, length, 9000 + self.num_requests))
            self.dispatched[request_id] = self.version
            self.dispatched_lengths.append(length)
            self.num_requests += 1
            self.in_flight += 1


PIPELINE_RUNS = (("sync_plain", "plain", 0), ("sync_spec", "adaptive", 0), ("async_plain", "plain", 2),
                 ("async_spec", "adaptive", 2))


def pipeline_pass(policy, draft, doc: dict, num_steps: int) -> dict[str, tuple[float, list[int]]]:
    """Per configuration: mean step seconds after warm-up, and the response lengths in dispatch order."""
    out = {}
    for name, kind, staleness in PIPELINE_RUNS:
        pipeline = _EngineInTheLoopPipeline(policy, draft, doc, kind, staleness, np.random.default_rng(11))
        ends = pipeline.run(num_steps + staleness + 1)
        out[name] = (float(np.diff(ends[staleness:]).mean()), pipeline.dispatched_lengths)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repetition of everything, fewer pipeline steps")
    parser.add_argument("--out", type=Path, default=OUT, help="measured document to write")
    args = parser.parse_args()

    from rollspec.sim.calibration import calibrate

    reps, num_steps = (1, 4) if args.quick else (5, 6)
    policy, draft = _models()
    rng = np.random.default_rng(0)
    cases = drain_cases(rng)
    lengths = [int(n) for n in np.clip(np.ceil(rng.lognormal(math.log(LENGTHS["mean"]) - LENGTHS["sigma"] ** 2 / 2,
                                                              LENGTHS["sigma"], 2000)), 1, LENGTHS["cap"])]
    doc = {
        "schema": "rollspec.sim.measured/v1",
        "machine": "2-core CPU shared with other engineers' jobs (no GPU), torch CPU, torch.set_num_threads(1)",
        "model": "random Qwen3-style policy (hidden 256, 6 layers, vocab 64, 4.8M params) / draft model "
                 "(hidden 64, 1 layer), built-in engine, temperature 1",
        "note": f"measured by bench/sim_profile.py, engine-thread CPU seconds, median of {reps} interleaved "
                "repetitions; learner, reward and weight sync in the pipeline runs are timers",
        "prompt_tokens": len(PROMPT), "max_num_seqs": 32, "k_max": K_MAX, "fixed_k": FIXED_K,
        "response_lengths": lengths, "training": TRAINING,
    }
    short, long, drains, pipelines = [], [], [], []
    started = time.time()
    for rep in range(reps):
        short.append(_profile_pass(policy, draft, PROMPT, rep))
        long.append(_profile_pass(policy, draft, LONG_PROMPT, rep))
        doc.update(profile(short, long))  # the adaptive runs plan on the profile as measured so far
        drains.append(drain_pass(policy, draft, doc["cost"], cases))
        pipelines.append(pipeline_pass(policy, draft, doc, num_steps))
        print(f"repetition {rep + 1}/{reps} done at {time.time() - started:.0f} s; "
              f"acceptance {np.round(doc['acceptance'], 2).tolist()}")
    doc["drains"] = [{"name": f"{name}_{kind}", "speculation": kind, "lengths": case_lengths, "max_num_seqs": rows,
                      "measured_s": statistics.median(d[f"{name}_{kind}"] for d in drains)}
                     for name, case_lengths, rows in cases for kind in ("plain", "fixed", "adaptive")]
    doc["steps"] = [{"name": name, "speculation": kind, "max_staleness": staleness, "colocated": False,
                     "num_steps": num_steps + staleness + 1,
                     "measured_step_s": statistics.median(p[name][0] for p in pipelines),
                     "lengths": max((p[name][1] for p in pipelines), key=len)}
                    for name, kind, staleness in PIPELINE_RUNS]
    doc["repetitions"] = {"drains_s": drains, "steps_s": [{name: run[0] for name, run in p.items()} for p in pipelines]}
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    report = calibrate(doc)
    for row in report.rows:
        print(f"{row.name:24s} measured {row.measured_s:7.3f} s  predicted {row.predicted_s:7.3f} s  "
              f"error {100 * row.error:5.1f}%")
    print(f"max error {100 * report.max_error:.1f}%  -> {args.out}")


if __name__ == "__main__":
    main()
