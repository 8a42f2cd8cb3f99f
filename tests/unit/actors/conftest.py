"""Builders shared by the actor unit tests: rollout records and deliveries without any transport."""

import itertools

import pytest
import torch

from rollspec.actors.messages import RolloutRecord
from rollspec.transport import Delivery

_tokens = itertools.count()


def _make_record(prompt_index: int, sample: int, *, group_size: int = 2, version: int = 0, reward: float = 1.0,
                drop_reason: str = "", finish_reason: str = "stop", token_ids=(7, 8, 2), **fields) -> RolloutRecord:
    values = dict(prompt_id=f"p{prompt_index}", prompt_index=prompt_index, sample_index=sample, group_size=group_size,
                  prompt_token_ids=[1, 10, 3], token_ids=list(token_ids),
                  logprobs=torch.full((len(token_ids),), -0.5), finish_reason=finish_reason, policy_version=version,
                  draft_version=0, proposed_per_position=[2, 1], accepted_per_position=[1, 0], num_verify_steps=2,
                  num_decode_steps=0, actor="test", issued_at=1.0, generated_at=2.0, reward=reward,
                  drop_reason=drop_reason, scored_at=3.0)
    values.update(fields)
    return RolloutRecord(**values)


def _deliver(record, attempt: int = 1) -> Delivery:
    return Delivery(record.msg_id if hasattr(record, "msg_id") else "x", record, attempt, (0, next(_tokens)))


@pytest.fixture
def make_record():
    """make_record(prompt_index, sample, group_size=2, version=0, reward=1.0, drop_reason="", ...)."""
    return _make_record


@pytest.fixture
def deliver():
    """deliver(record, attempt=1) -> a Delivery as a receiver hands it out."""
    return _deliver
