"""Start-up profiling measures every requested (B, q) at a constant batch size."""

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
    assert set(profile.draft_s) == {1, 3} and all(t > 0 for t in profile.draft_s.values())
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
    draft_s, catch_up_s = _draft_costs(policy, config, drafter, 4, 16, repeats=2)
    assert draft_s > 0 and catch_up_s >= 0
    # Each timed catch-up step follows the plain stretch: its width exceeds k + 1 = 2 by at least the stretch.
    assert sum(width >= CATCH_UP_PLAIN_STEPS + 1 for width in offered) >= 2


def test_the_batch_stays_full_and_the_schedule_is_played():
    policy = random_decoder(tiny_config(vocab_size=30), seed=0, std=0.3)
    config = EngineConfig(max_batch_size=8, max_seq_len=128, k_max=4)
    schedule = [0, 4, 4, 1, 0, 2]
    steps = _run(policy, config, RepeatDrafter(), schedule, 5, 16).steps
    assert [k for _, k, _, _ in steps] == schedule
    assert {b for b, _, _, _ in steps} == {5}
