"""Synthetic devices and a step loop standing in for the engine: known true costs and acceptance."""

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest

from rollspec.scheduler import CostModel, expected_tokens, profile_points, sample_num_accepted


@dataclass(frozen=True)
class LinearDevice:
    """True step times: a weight-streaming floor plus work proportional to tokens (B * q); drafting k positions
    costs k * draft_s(B) plus draft_step_s once per speculative step (the drafter's call and catch-up)."""

    target_fixed_s: float = 3e-3
    target_per_token_s: float = 2e-5
    draft_fixed_s: float = 3e-4
    draft_per_row_s: float = 2e-6
    draft_step_s: float = 0.0

    def target_s(self, batch_size, q):
        return self.target_fixed_s + self.target_per_token_s * batch_size * q

    def draft_s(self, batch_size):
        return self.draft_fixed_s + self.draft_per_row_s * batch_size

    def drafting_s(self, batch_size, k):
        return k * self.draft_s(batch_size) + (self.draft_step_s if k else 0.0)

    def step_s(self, batch_size, k):
        return self.drafting_s(batch_size, k) + self.target_s(batch_size, k + 1)

    def profile(self, max_batch_size=256, k_max=8):
        batch_sizes, qs = profile_points(max_batch_size, k_max)
        target = {(b, q): self.target_s(b, q) for b in batch_sizes for q in qs}
        return target, {b: self.draft_s(b) for b in batch_sizes}

    def cost_model(self, max_batch_size=256, k_max=8, scale=1.0):
        """The profile of this device (every time times `scale`: one taken under load) as a CostModel."""
        target, draft = self.profile(max_batch_size, k_max)
        fixed = {b: scale * self.draft_step_s for b in draft} if self.draft_step_s else None
        return CostModel.from_profile({key: scale * s for key, s in target.items()},
                                      {b: scale * s for b, s in draft.items()}, draft_fixed_s=fixed)

    def true_rates(self, batch_size, alphas, k_max):
        """True expected tokens/s of the batch at every fixed k = 0 .. k_max."""
        expected = expected_tokens(np.asarray(alphas)[:k_max])
        return np.array([batch_size * expected[k] / self.step_s(batch_size, k) for k in range(k_max + 1)])


class StepByStep:
    """A cost model's forwarding wrapper without `observe_steady`: the scheduler then takes every step's full path
    (the path before steady steps were kept in bulk)."""

    def __init__(self, inner):
        self.inner = inner

    def step_s(self, batch_size, k_max):
        return self.inner.step_s(batch_size, k_max)

    def draft_s(self, batch_size):
        return self.inner.draft_s(batch_size)

    def drafting_s(self, batch_size, k):
        return self.inner.drafting_s(batch_size, k)

    def target_s(self, batch_size, q):
        return self.inner.target_s(batch_size, q)

    def observe(self, *args):
        self.inner.observe(*args)


class CountingCosts(StepByStep):
    """StepByStep counting its `step_s` calls: one per plan, and one per full (not quiet) observe."""

    def __init__(self, inner):
        super().__init__(inner)
        self.num_step_s = 0

    def step_s(self, batch_size, k_max):
        self.num_step_s += 1
        return super().step_s(batch_size, k_max)


def run_steps(scheduler, device: LinearDevice, *, alphas, batch_size, num_steps, rng,
              time_noise=0.0):
    """Drive the scheduler like the engine would; returns the decisions.

    alphas / batch_size may be constants or functions of the step index. Times are the
    device's true times with multiplicative lognormal noise of sigma time_noise.
    """
    decisions = []
    for i in range(num_steps):
        alpha = alphas(i) if callable(alphas) else alphas
        b = batch_size(i) if callable(batch_size) else batch_size
        k = scheduler.choose_depth(b)
        num_accepted = sample_num_accepted(rng, alpha, k, b)
        noise = np.exp(rng.normal(0.0, time_noise, size=2)) if time_noise else np.ones(2)
        draft = device.drafting_s(b, k) * noise[0]
        target = device.target_s(b, k + 1) * noise[1]
        scheduler.observe(b, k, num_accepted, draft, target)
        decisions.append(scheduler.last_decision)
    return decisions


@pytest.fixture(scope="session")
def synthetic():
    return SimpleNamespace(LinearDevice=LinearDevice, run_steps=run_steps, CountingCosts=CountingCosts,
                           StepByStep=StepByStep)
