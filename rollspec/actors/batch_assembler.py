"""Learner-side batch assembly: scored records in, whole GRPO groups out, every group resolved once.

Pure logic (no sockets, no Ray): the learner feed hands it deliveries from the `scored` queue and
asks for a step's batch. A group is resolved exactly once, as

- trained in step t: each of its samples trained, or dropped with its own reason (reward_error,
  length, bad_prompt), or
- dropped as a whole: "stale" (its policy version can no longer train; the admission
  controller decides) or "forgotten" (the controller gave up on it, e.g. a transport drop).

Groups are the unit because GRPO advantages compare the samples of one prompt: all G samples
of a group were generated with one policy version (one rollout actor, no mid-generation weight
swap), so freshness is a property of the group and a batch never splits one.
"""

import dataclasses
from collections.abc import Iterable

import torch

from rollspec.actors.messages import DROP_BAD_TOKENS, DROP_LENGTH, RolloutRecord
from rollspec.rl.trajectory_batch import MAX_LOGPROB, RolloutSample
from rollspec.scheduler import DROP_REASON_STALE, AdmissionController
from rollspec.transport import Delivery

DROP_FORGOTTEN = "forgotten"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class GroupResolution:
    """What happened to one prompt group; `sample_reasons[j]` is "" if sample j was trained."""

    prompt_id: str
    prompt_index: int
    trained: bool
    reason: str
    policy_version: int
    draft_version: int
    sample_reasons: tuple[str, ...]
    rewards: tuple[float, ...]
    num_tokens: tuple[int, ...]
    num_verify_steps: int
    num_accepted: int
    num_drafted: int
    issued_at: float
    generated_at: float
    scored_at: float
    first_error: str

    @property
    def num_trained_samples(self) -> int:
        """Samples of this group that were trained (no drop reason)."""
        return sum(1 for reason in self.sample_reasons if not reason)


@dataclasses.dataclass(slots=True)
class _Group:
    records: dict[int, RolloutRecord]
    deliveries: dict[int, Delivery]
    arrival: int

    @property
    def first(self) -> RolloutRecord:
        return next(iter(self.records.values()))

    @property
    def is_complete(self) -> bool:
        return len(self.records) == self.first.group_size


@dataclasses.dataclass(slots=True)
class Assembled:
    """The outcome of one `take`: a batch (or None if there is not yet a full one), every group it
    resolved, and the deliveries to ack. `to_ack_after_step` belong to the batch: ack them only once
    the optimizer step is done, so a learner that dies mid-step gets them again."""

    samples: list[RolloutSample] | None
    resolutions: list[GroupResolution]
    to_ack_now: list[Delivery]
    to_ack_after_step: list[Delivery]


class BatchAssembler:
    """Buffers scored records by group and assembles batches of `groups_per_step` whole groups,
    oldest policy version first (the admission controller's order)."""

    def __init__(self, admission: AdmissionController, *, vocab_size: int, drop_truncated: bool = False):
        self._admission = admission
        self._vocab_size = vocab_size
        self._groups_per_step = admission.config.prompts_per_step
        self._drop_truncated = drop_truncated
        self._groups: dict[str, _Group] = {}
        self._resolved: set[str] = set()
        self._arrivals = 0
        self.num_duplicates = 0
        self.num_late = 0

    @property
    def num_buffered_groups(self) -> int:
        """Groups with at least one record buffered and not yet resolved."""
        return len(self._groups)

    def add(self, delivery: Delivery) -> Delivery | None:
        """Buffer one scored record. Returns a delivery to ack at once: a record of a group already
        resolved (a late duplicate), or the older lease of a record delivered twice."""
        record: RolloutRecord = delivery.item
        if record.prompt_id in self._resolved:
            self.num_late += 1
            return delivery
        group = self._groups.get(record.prompt_id)
        if group is None:
            group = self._groups[record.prompt_id] = _Group({}, {}, self._arrivals)
            self._arrivals += 1
        previous = group.deliveries.get(record.sample_index)
        group.records[record.sample_index] = record
        group.deliveries[record.sample_index] = delivery
        if previous is not None:
            self.num_duplicates += 1
        return previous

    def forget(self, prompt_ids: Iterable[str]) -> list[Delivery]:
        """Stop waiting for these groups (the controller resolved them); returns deliveries to ack."""
        out = []
        for prompt_id in prompt_ids:
            self._resolved.add(prompt_id)
            group = self._groups.pop(prompt_id, None)
            if group is not None:
                out.extend(group.deliveries.values())
        return out

    def take(self, step: int) -> Assembled:
        """Drop complete groups too stale for `step`; if `groups_per_step` fresh complete groups are
        buffered, resolve them as trained in `step` and return their samples."""
        complete = sorted((g for g in self._groups.values() if g.is_complete), key=lambda g: g.arrival)
        expanded = [g.first.policy_version for g in complete for _ in g.records]
        selected, stale = self._admission.select_batch(expanded, step)
        offsets = [0]
        for group in complete:
            offsets.append(offsets[-1] + len(group.records))
        stale_starts, selected_starts = set(stale), set(selected)
        out = Assembled(None, [], [], [])
        for group, start in zip(complete, offsets):
            if start in stale_starts:
                out.resolutions.append(self._resolve(group, step, DROP_REASON_STALE))
                out.to_ack_now.extend(group.deliveries.values())
        chosen = [g for g, start in zip(complete, offsets) if start in selected_starts]
        if len(chosen) < self._groups_per_step:
            return out
        # Prompt order, not arrival order, within a version: the same groups make the same batch
        # (same floating-point sums) however the actors' timing interleaved them.
        chosen.sort(key=lambda g: (g.first.policy_version, g.first.prompt_index))
        samples: list[RolloutSample] = []
        for group in chosen[: self._groups_per_step]:
            resolution = self._resolve(group, step, "")
            out.resolutions.append(resolution)
            out.to_ack_after_step.extend(group.deliveries.values())
            samples.extend(self._sample(group.records[j]) for j, reason in enumerate(resolution.sample_reasons)
                           if not reason)
        out.samples = samples
        return out

    def _resolve(self, group: _Group, step: int, reason: str) -> GroupResolution:
        """Resolve `group` (trained in `step` unless `reason`), counting each sample's freshness check."""
        first = group.first
        del self._groups[first.prompt_id]
        self._resolved.add(first.prompt_id)
        records = [group.records[j] for j in range(first.group_size)]
        for _ in records:
            self._admission.admit(first.policy_version, step)
        sample_reasons = tuple(reason or self._sample_reason(r) for r in records)
        errors = [r.error for r in records if r.error]
        return GroupResolution(
            prompt_id=first.prompt_id, prompt_index=first.prompt_index, trained=not reason, reason=reason,
            policy_version=first.policy_version, draft_version=first.draft_version, sample_reasons=sample_reasons,
            rewards=tuple(r.reward for r in records), num_tokens=tuple(len(r.token_ids) for r in records),
            num_verify_steps=sum(r.num_verify_steps for r in records),
            num_accepted=sum(r.num_accepted for r in records),
            num_drafted=sum(sum(r.proposed_per_position) for r in records),
            issued_at=first.issued_at, generated_at=max(r.generated_at for r in records),
            scored_at=max(r.scored_at for r in records), first_error=errors[0] if errors else "")

    def _sample_reason(self, record: RolloutRecord) -> str:
        if record.drop_reason:
            return record.drop_reason
        if self._drop_truncated and record.finish_reason == "length":
            return DROP_LENGTH
        # What the model cannot take is refused here, before it could fail a step on every rank.
        ids = [*record.prompt_token_ids, *record.token_ids]
        if not record.prompt_token_ids or max(ids) >= self._vocab_size:
            return DROP_BAD_TOKENS
        if not bool((torch.isfinite(record.logprobs) & (record.logprobs <= MAX_LOGPROB)).all()):
            return DROP_BAD_TOKENS
        return ""

    @staticmethod
    def _sample(record: RolloutRecord) -> RolloutSample:
        return RolloutSample(prompt_token_ids=record.prompt_token_ids, token_ids=record.token_ids,
                             logprobs=record.logprobs, reward=record.reward, group_id=record.prompt_id,
                             policy_version=record.policy_version)
