"""One rollout replica, decode step by decode step: continuous batching of sequences that finish at their lengths."""

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from rollspec.scheduler import DepthScheduler, expected_tokens, sample_num_accepted
from rollspec.sim.step_cost import StepCost

KV_WATERMARK = 0.02  # share of the KV cache admission leaves free for running rows to grow into
LEARNING_STEPS = 32  # single steps before the fluid model prices identical steps in chunks


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaConfig:
    """Engine limits and how finely the replica is stepped.

    - `max_num_seqs`: rows decoding at once; requests beyond it wait for a row to free up.
    - `prompt_tokens`: prompt length of every request (prefill cost, starting context).
    - `kv_capacity_tokens`: cached tokens the replica's KV memory holds. A request is admitted
      only if its context fits; when the growing rows would overflow it, the newest rows are
      preempted and later recomputed (vLLM's policy), which is what bounds concurrency at
      long context.
    - `sampled_acceptance`: True steps one decode at a time and advances each row by its own
      sampled acceptance (the engine's randomness); False advances every row by the expected
      E[tokens | k] and runs up to `max_chunk_steps` identical steps at once (the batch only
      changes when a row finishes), which is what makes cluster-scale drains affordable.
    """

    max_num_seqs: int
    prompt_tokens: int
    kv_capacity_tokens: float = math.inf
    sampled_acceptance: bool = False
    max_chunk_steps: int = 64

    def __post_init__(self) -> None:
        assert self.max_num_seqs >= 1 and self.prompt_tokens >= 0 and self.max_chunk_steps >= 1, self
        assert self.kv_capacity_tokens > self.prompt_tokens, self


@dataclass(frozen=True, slots=True)
class Advance:
    """What one `ReplicaSim.advance` did: seconds spent, and the policy version and length of each finished row."""

    elapsed_s: float
    finished_versions: NDArray[np.int64]
    finished_lengths: NDArray[np.int64]


@dataclass(slots=True)
class ReplicaStats:
    """Totals since the replica started; `steps_by_k[k]` counts decode steps run at depth k."""

    busy_s: float = 0.0
    prefill_s: float = 0.0
    num_steps: int = 0
    num_tokens: float = 0.0
    num_preemptions: int = 0
    steps_by_k: dict[int, int] = field(default_factory=dict)

    @property
    def mean_k(self) -> float:
        return sum(k * n for k, n in self.steps_by_k.items()) / self.num_steps if self.num_steps else 0.0


class ReplicaSim:
    """A rollout engine replica under the simulator's clock.

    Each `advance` admits waiting requests into free rows (one prefill, which samples each
    row's first token, as the engine's does), asks the depth policy for k at the live batch
    size B, and runs decode/verify steps priced by the cost model:
    k * c_draft(B) + c_target(B, k + 1) each. Rows finish at their sampled lengths
    (a final step emits only what the budget allows, like the engine), so the batch drains
    into its long tail and k is re-chosen as B shrinks. Acceptance follows the scheduler's
    generative model (`sample_num_accepted`), and the depth policy observes every chunk.
    """

    def __init__(self, *, cost: StepCost, depth: DepthScheduler, alphas: NDArray[np.float64], config: ReplicaConfig,
                 rng: np.random.Generator) -> None:
        k_max = depth.config.k_max
        assert len(alphas) >= k_max, (len(alphas), k_max)
        self._cost = cost
        self._depth = depth
        self._alphas = np.asarray(alphas, dtype=np.float64)[:k_max]
        self._expected = expected_tokens(self._alphas)
        self._config = config
        self._rng = rng
        self._remaining = np.zeros(0)
        self._context = np.zeros(0)
        self._versions = np.zeros(0, dtype=np.int64)
        self._lengths = np.zeros(0, dtype=np.int64)
        # (remaining tokens, context tokens, policy version, length, is a preempted row)
        self._waiting: deque[tuple[float, float, int, int, bool]] = deque()
        self._k, self._steps_at_k = -1, 0  # the depth of the last chunk and how many steps it has run in a row
        self._not_drafted = 0  # rows admitted since the last speculative step
        self.stats = ReplicaStats()
        self.trace: list[tuple[float, int, int]] | None = None  # (busy seconds, B, k) per chunk once enabled

    @property
    def depth(self) -> DepthScheduler:
        return self._depth

    @property
    def max_num_seqs(self) -> int:
        return self._config.max_num_seqs

    @property
    def num_live(self) -> int:
        return self._remaining.size

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @property
    def is_idle(self) -> bool:
        return self.num_live == 0 and not self._waiting

    def add(self, lengths: NDArray[np.int64], policy_version: int) -> None:
        """Queue requests that will generate `lengths` tokens, dispatched under `policy_version`."""
        prompt = float(self._config.prompt_tokens)
        self._waiting.extend((float(n), prompt, policy_version, int(n), False) for n in lengths)

    def advance(self, max_s: float = math.inf) -> Advance:
        """Admit, then run one chunk of identical steps, ending early enough not to pass max_s if it can."""
        elapsed = self._admit()
        if self.num_live == 0 or self._remaining.min() <= 1e-9:  # nothing to decode, or prefill finished a row
            return self._retire(elapsed)
        self._cost.set_context(float(self._context.mean()), float(self._context.max()))
        k = self._depth.choose_depth(self.num_live)
        per_step = float(self._expected[k])
        self._preempt_to_fit(per_step)
        batch_size = self.num_live
        # The true cost of the chosen step (the policy planned on its own belief, which may be off).
        # Asking for the policy's k_max keeps one memoized array per (B, context) in the roofline.
        step_s = float(self._cost.step_s(batch_size, self._depth.config.k_max)[k])
        draft_s = k * self._cost.draft_s(batch_size)
        target_s = step_s - draft_s
        if k > 0 and self._not_drafted:  # rows the drafter has not seen yet: it catches up on this step
            catch_up = self._cost.draft_admit_s(batch_size, self._not_drafted, float(self._config.prompt_tokens))
            self._not_drafted = 0
            draft_s += catch_up
            self.stats.busy_s += catch_up
            elapsed += catch_up
        sampled = sample_num_accepted(self._rng, self._alphas, k, batch_size)
        if self._config.sampled_acceptance:
            num_steps, progress = 1, sampled + 1.0
        else:
            # The batch is unchanged until the first row finishes or the KV cache fills up.
            num_steps = int(np.ceil(self._remaining.min() / per_step - 1e-9))
            # One observation stands for the whole chunk, so chunks start only once the policy has seen
            # LEARNING_STEPS single steps (two acceptance half-lives by default), and a new depth is held for
            # at most as many steps as it has run so far (1, 2, 4, ...): the policy still learns step by step.
            held = self._steps_at_k if k == self._k else 0
            if self._depth.acceptance.num_steps < LEARNING_STEPS:
                held = 0
            num_steps = min(num_steps, self._config.max_chunk_steps, max(1, held))
            if math.isfinite(self._config.kv_capacity_tokens):
                room = (self._config.kv_capacity_tokens - self._context.sum()) / (batch_size * per_step)
                num_steps = max(1, min(num_steps, int(room)))
            if max_s - elapsed < num_steps * step_s:
                num_steps = max(1, int((max_s - elapsed) / step_s))
            progress = np.full(batch_size, num_steps * per_step)
        self._depth.observe(batch_size, k, sampled, draft_s, target_s)
        if self.trace is not None:
            self.trace.append((self.stats.busy_s, batch_size, k))
        self._steps_at_k = self._steps_at_k + num_steps if k == self._k else num_steps
        self._k = k
        elapsed += num_steps * step_s
        self._record(k, num_steps, num_steps * step_s, np.minimum(progress, self._remaining).sum())
        self._remaining -= progress
        self._context += np.minimum(progress, self._remaining + progress)
        return self._retire(elapsed)

    def _admit(self) -> float:
        """Move waiting requests into free rows while their context fits in the KV cache; price their prefill."""
        # Admission keeps a watermark free, as vLLM does, so a row just preempted for lack of room is not
        # readmitted at once only to be preempted again a step later.
        free_tokens = (1.0 - KV_WATERMARK) * self._config.kv_capacity_tokens - self._context.sum()
        admitted = []
        while self._waiting and self.num_live + len(admitted) < self._config.max_num_seqs:
            if self._waiting[0][1] > free_tokens and (admitted or self.num_live):
                break
            admitted.append(self._waiting.popleft())
            free_tokens -= admitted[-1][1]
        if not admitted:
            return 0.0
        remaining, context, versions, lengths, resumed = (np.array(column) for column in zip(*admitted))
        # The prefill forward samples each row's next token, as the engine's does.
        self._remaining = np.concatenate([self._remaining, remaining - 1.0])
        self._context = np.concatenate([self._context, context + 1.0])
        self.stats.num_tokens += len(admitted)
        self._versions = np.concatenate([self._versions, versions.astype(np.int64)])
        self._lengths = np.concatenate([self._lengths, lengths.astype(np.int64)])
        num_new = int((~resumed).sum())
        self._not_drafted += len(admitted)
        seconds = self._cost.prefill_s(num_new, self._config.prompt_tokens) if num_new else 0.0
        # A preempted row lost its KV and recomputes prompt + generated tokens on re-admission.
        seconds += sum(self._cost.prefill_s(1, int(c)) for c in context[resumed])
        self.stats.prefill_s += seconds
        self.stats.busy_s += seconds
        return seconds

    def _preempt_to_fit(self, per_step: float) -> None:
        """Evict the newest rows (vLLM's recompute preemption) until one more step's tokens fit in the KV cache."""
        capacity = self._config.kv_capacity_tokens
        while self.num_live > 1 and self._context.sum() + self.num_live * per_step > capacity:
            row = (self._remaining[-1], self._context[-1], int(self._versions[-1]), int(self._lengths[-1]), True)
            self._waiting.appendleft(row)
            self._remaining, self._context = self._remaining[:-1], self._context[:-1]
            self._versions, self._lengths = self._versions[:-1], self._lengths[:-1]
            self.stats.num_preemptions += 1

    def _retire(self, elapsed: float) -> Advance:
        done = self._remaining <= 1e-9
        finished = Advance(elapsed, self._versions[done], self._lengths[done])
        if done.any():
            keep = ~done
            self._remaining, self._context = self._remaining[keep], self._context[keep]
            self._versions, self._lengths = self._versions[keep], self._lengths[keep]
        return finished

    def _record(self, k: int, num_steps: int, seconds: float, num_tokens: float) -> None:
        self.stats.busy_s += seconds
        self.stats.num_steps += num_steps
        self.stats.num_tokens += num_tokens
        self.stats.steps_by_k[k] = self.stats.steps_by_k.get(k, 0) + num_steps


@dataclass(frozen=True, slots=True)
class DrainResult:
    """Generating one batch to completion on one replica."""

    time_s: float
    stats: ReplicaStats


def simulate_drain(replica: ReplicaSim, lengths: NDArray[np.int64]) -> DrainResult:
    """Seconds for `replica` to generate every response of `lengths`, all queued at once (one synchronous rollout)."""
    assert replica.is_idle, "drain needs an idle replica"
    busy_before = replica.stats.busy_s
    replica.add(lengths, policy_version=0)
    time_s = 0.0
    while not replica.is_idle:
        time_s += replica.advance().elapsed_s
    assert abs(replica.stats.busy_s - busy_before - time_s) <= 1e-9 * max(1.0, time_s)
    return DrainResult(time_s, replica.stats)
