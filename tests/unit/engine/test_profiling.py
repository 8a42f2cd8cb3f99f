"""Start-up profiling measures every requested (B, q) at a constant batch size."""

import time

from rollspec.engine.config import EngineConfig
from rollspec.engine.drafters.ngram import NgramDrafter
from rollspec.engine.profiling import RepeatDrafter, _run, profile_step_costs
from rollspec.models.random_models import random_decoder, tiny_config


def test_profile_covers_the_grid_with_positive_times():
    policy = random_decoder(tiny_config(vocab_size=30), seed=0, std=0.3)
    config = EngineConfig(max_batch_size=8, max_seq_len=128, k_max=4)
    profile = profile_step_costs(policy, config, batch_sizes=[1, 3], qs=[1, 2, 5], repeats=2,
                                 drafter_factory=lambda cfg: NgramDrafter(num_slots=cfg.max_batch_size))
    assert set(profile.target_s) == {(b, q) for b in (1, 3) for q in (1, 2, 5)}
    assert all(t > 0 for t in profile.target_s.values())
    assert set(profile.draft_s) == set(profile.draft_fixed_s) == {1, 3}
    assert all(a >= 0 and b >= 0 and a + b > 0 for a, b in zip(profile.draft_fixed_s.values(), profile.draft_s.values()))
    assert set(profile.catch_up_s) == {1, 3} and all(t >= 0 for t in profile.catch_up_s.values())


def test_the_catch_up_profile_times_steps_that_follow_plain_stretches():
    from rollspec.engine.drafters.eagle import EagleDrafter
    from rollspec.engine.profiling import CATCH_UP_PLAIN_STEPS, _draft_costs
    from rollspec.models.random_models import random_eagle_head

    cfg = tiny_config(vocab_size=30)
    policy = random_decoder(cfg, seed=0, std=0.3)
    config = EngineConfig(max_batch_size=4, max_seq_len=128, k_max=4)
    drafter = EagleDrafter(random_eagle_head(cfg, seed=1, std=0.3), policy, num_slots=4, max_len=config.cache_len)
    offered = []
    record = drafter.catch_up_tokens
    drafter.catch_up_tokens = lambda lens: offered.append(record(lens)) or offered[-1]
    fixed_s, draft_s, catch_up_s = _draft_costs(policy, config, drafter, 4, 16, repeats=2)
    assert fixed_s >= 0 and draft_s >= 0 and fixed_s + draft_s > 0 and catch_up_s >= 0
    # Each timed catch-up step follows the plain stretch: its width exceeds k + 1 = 2 by at least the stretch.
    assert sum(width >= CATCH_UP_PLAIN_STEPS + 1 for width in offered) >= 2


def test_the_batch_stays_full_and_the_schedule_is_played():
    policy = random_decoder(tiny_config(vocab_size=30), seed=0, std=0.3)
    config = EngineConfig(max_batch_size=8, max_seq_len=128, k_max=4)
    schedule = [0, 4, 4, 1, 0, 2]
    steps = _run(policy, config, RepeatDrafter(), schedule, 5, 16).steps
    assert [k for _, k, _, _ in steps] == schedule
    assert {b for b, _, _, _ in steps} == {5}


class _SpinDrafter(RepeatDrafter):
    """Free drafting plus a busy wait of FIXED_S + k * PER_POSITION_S of this thread's CPU time (what the engine's
    step clock reads with one torch thread), so the profile has a known answer."""

    FIXED_S, PER_POSITION_S = 2e-3, 2e-4

    def propose(self, ctx, k):
        end = time.thread_time() + self.FIXED_S + k * self.PER_POSITION_S
        while time.thread_time() < end:
            pass
        return super().propose(ctx, k)


def test_drafting_is_profiled_as_a_per_step_part_plus_a_per_position_part():
    policy = random_decoder(tiny_config(vocab_size=30), seed=0, std=0.3)
    config = EngineConfig(max_batch_size=2, max_seq_len=128, k_max=8, step_clock="thread")
    profile = profile_step_costs(policy, config, batch_sizes=[1], qs=[1, 2, 9], repeats=2,
                                 drafter_factory=lambda cfg: _SpinDrafter())
    # Priced per position alone (the profile at k_max over k_max) k = 1 would be 0.4 ms where it takes 2.2.
    assert 2e-3 <= profile.draft_fixed_s[1] <= 2.4e-3
    assert 1.5e-4 <= profile.draft_s[1] <= 2.6e-4
