"""The engine honours a depth policy's plain lease: no catch-up width, no choice asked while it stands, every
step still observed, and the policy asked again as soon as the batch falls under the lease's floor."""

import torch

from rollspec.engine.config import EngineConfig
from rollspec.engine.drafters.eagle import EagleDrafter
from rollspec.engine.engine import Engine
from rollspec.engine.sampling_params import SamplingParams
from rollspec.engine.sequence import Request
from rollspec.models.random_models import random_decoder, random_eagle_head, tiny_config

CFG = tiny_config(vocab_size=20)
LEASE_STEPS = 5


class _Lease:
    steps, min_batch_size = 0, 0


class _LeasingPolicy:
    """Plain decoding, leased LEASE_STEPS steps at a time down to 2 rows; keeps what the engine asked and told."""

    def __init__(self):
        self.asked, self.observed, self.lease = [], [], _Lease()

    def choose_depth(self, batch_size, catch_up_tokens=0):
        self.asked.append(len(self.observed))
        return 0

    def plain_lease(self):
        self.lease.steps, self.lease.min_batch_size = LEASE_STEPS, 2
        return self.lease

    def observe(self, batch_size, k, num_accepted, draft_time_s, target_time_s):
        self.observed.append(batch_size)


def _requests():
    return [Request(request_id=str(i), prompt_ids=(1, 2, 3 + i), params=SamplingParams(temperature=0.0, max_new_tokens=n,
                                                                                       stop_token_ids=()))
            for i, n in enumerate((9, 30, 31))]


def test_the_engine_asks_neither_policy_nor_drafter_while_a_plain_lease_stands():
    policy = random_decoder(CFG, seed=0, std=0.3)
    config = EngineConfig(max_batch_size=4, max_seq_len=96, k_max=3)
    drafter = EagleDrafter(random_eagle_head(CFG, seed=2, std=0.3), policy, num_slots=4, max_len=config.cache_len)
    widths = []
    catch_up_tokens = drafter.catch_up_tokens
    drafter.catch_up_tokens = lambda lens: widths.append(len(lens)) or catch_up_tokens(lens)
    depth = _LeasingPolicy()
    with torch.no_grad():
        out = Engine(policy, config, drafter=drafter, depth=depth).generate(_requests())
        plain = Engine(policy, config).generate(_requests())
    assert [c.token_ids for c in out] == [c.token_ids for c in plain]
    batch_sizes = depth.observed
    assert batch_sizes[0] == 3 and batch_sizes[-1] == 1 and len(batch_sizes) == 30  # every step observed
    assert len(widths) == len(depth.asked)  # the drafter's width is read only when the policy is asked
    # Asked at the first step, then after each LEASE_STEPS leased steps while 2+ rows are live; with one row
    # left (under the floor) at every step.
    two_or_more = [step for step in depth.asked if batch_sizes[step] >= 2]
    assert two_or_more == list(range(0, 1 + batch_sizes.count(3) + batch_sizes.count(2), LEASE_STEPS + 1))[:len(two_or_more)]
    assert [step for step in depth.asked if batch_sizes[step] == 1] == [i for i, b in enumerate(batch_sizes) if b == 1]
