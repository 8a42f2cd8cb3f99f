"""The reward actor's loop: rollout records in, the same records with a reward (or a reward error) out.

Delivery: a trajectory is acked only after the scored queue confirmed its scored copy, and the
copy keeps the trajectory's message id, so a redelivered trajectory is scored again at worst and
never counted twice.

Reward errors: a reward function that raises, times out, crashes or returns a non-finite value or
a non-number yields a record with drop_reason "reward_error" and the detail; it is counted here
and dropped (with that reason) by the learner feed. Dropping rather than scoring 0 keeps a broken
reward function from teaching the policy that every answer is wrong.
"""

import dataclasses
import re
import time
from collections.abc import Callable
from typing import Any

from rollspec.actors.messages import DROP_REWARD_ERROR, RolloutRecord
from rollspec.actors.reward_fn import RewardOutcome, texts_of
from rollspec.rl.template import InvalidTokenIdError
from rollspec.transport import Delivery, Receiver, Sender

ScoreFn = Callable[[str, str], RewardOutcome]


@dataclasses.dataclass(slots=True)
class RewardStats:
    """Running totals of one reward actor."""

    num_scored: int = 0
    num_reward_errors: int = 0
    num_passed_through: int = 0
    num_unexpected_messages: int = 0
    num_acked: int = 0
    reward_sum: float = 0.0
    score_s: float = 0.0
    last_error: str = ""
    errors_by_kind: dict[str, int] = dataclasses.field(default_factory=dict)
    """Reward errors by their first words ('raised ValueError', 'timed out after 5.0s', ...)."""

    def as_dict(self) -> dict[str, Any]:
        """The totals as a plain dict."""
        return dataclasses.asdict(self)


class RewardLoop:
    """Scores rollout records with `score` (see reward_fn / reward_sandbox); call `run_once` from one thread."""

    def __init__(self, *, trajectories: Receiver, scored: Sender, score: ScoreFn, batch_items: int = 16,
                 ack_wait_s: float = 0.05):
        self.stats = RewardStats()
        self._trajectories, self._scored, self._score = trajectories, scored, score
        self._batch_items = batch_items
        self._ack_wait_s = ack_wait_s
        self._unacked: list[Delivery] = []

    def run_once(self, idle_wait_s: float = 0.05) -> None:
        """Score what has arrived (waiting up to idle_wait_s for something), send, ack what is confirmed."""
        for delivery in self._trajectories.get_batch(self._batch_items, timeout_s=idle_wait_s):
            record = delivery.item
            if type(record) is not RolloutRecord:
                self.stats.num_unexpected_messages += 1
                self._trajectories.ack(delivery)  # not a trajectory: nothing to score or pass on
                continue
            self._scored.put(self._scored_copy(record), msg_id=record.msg_id)
            self._unacked.append(delivery)
        if self._unacked and self._scored.flush(timeout_s=self._ack_wait_s):
            self._trajectories.ack_many(self._unacked)
            self.stats.num_acked += len(self._unacked)
            self._unacked = []

    def _scored_copy(self, record: RolloutRecord) -> RolloutRecord:
        if record.drop_reason:  # already dropped upstream (e.g. prompt too long): carry the reason on
            self.stats.num_passed_through += 1
            return dataclasses.replace(record, scored_at=time.time())
        start = time.perf_counter()
        try:
            prompt, response = texts_of(record.prompt_token_ids, record.token_ids)
        except InvalidTokenIdError as exc:
            outcome = RewardOutcome(0.0, f"cannot decode the tokens: {exc}")
        else:
            outcome = self._score(prompt, response)
        self.stats.score_s += time.perf_counter() - start
        self.stats.num_scored += 1
        if not outcome.ok:
            self.stats.num_reward_errors += 1
            self.stats.last_error = outcome.error
            kind = re.split(r"[:(,]", outcome.error, maxsplit=1)[0].strip()
            self.stats.errors_by_kind[kind] = self.stats.errors_by_kind.get(kind, 0) + 1
            return dataclasses.replace(record, drop_reason=DROP_REWARD_ERROR, error=outcome.error[:1000],
                                       scored_at=time.time())
        self.stats.reward_sum += outcome.value
        return dataclasses.replace(record, reward=outcome.value, scored_at=time.time())
