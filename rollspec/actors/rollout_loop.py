"""The rollout actor's loop: leased prompt groups in, one record per completion out, weights swapped
between generations.

Delivery: a prompt group is acked only after the trajectories queue confirmed every record of it,
so a rollout actor that dies loses nothing: the group's lease expires, another actor generates it,
and any record the dead actor had already sent is dropped downstream as a duplicate (record ids
are `<prompt id>/<sample>`).

Versions: when a newer policy or draft version has arrived, the loop stops taking prompts, lets
the engine finish what it is generating, then swaps. Every token of a completion therefore comes
from the one policy version recorded on it, and no KV cache entry outlives the weights that made it.
"""

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import torch

from rollspec.actors.messages import DROP_BAD_PROMPT, DROP_LENGTH, PromptGroup, RolloutRecord, sample_id_of
from rollspec.engine.errors import InvalidRequestError, PromptTooLongError, WeightUpdateError
from rollspec.engine.generator import Generator
from rollspec.engine.sampling_params import SamplingParams
from rollspec.engine.sequence import Completion, Request
from rollspec.transport import BackPressureTimeout, Delivery, Receiver, Sender, WeightSink

POLICY_EXTRA_PREFIXES = ("mtp.",)  # published with the policy, not part of the decoder the engine swaps


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SamplingDefaults:
    """How every sample is drawn (the request seed comes from the prompt group)."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 64
    stop_token_ids: tuple[int, ...] = ()


@dataclasses.dataclass(slots=True)
class RolloutStats:
    """Running totals of one rollout actor (read by the controller for metrics)."""

    policy_version: int = 0
    draft_version: int = 0
    num_groups: int = 0
    num_completions: int = 0
    num_tokens: int = 0
    num_engine_steps: int = 0
    engine_s: float = 0.0
    num_verify_steps: int = 0
    num_accepted: int = 0
    num_drafted: int = 0
    accepted_per_position: list[int] = dataclasses.field(default_factory=list)
    """Draft tokens accepted at draft position j+1 (for acceptance per position)."""
    drafted_per_position: list[int] = dataclasses.field(default_factory=list)
    num_policy_swaps: int = 0
    num_draft_swaps: int = 0
    swap_s: float = 0.0
    num_rejected_weights: int = 0
    num_dropped_prompts: int = 0
    num_duplicate_deliveries: int = 0
    num_unexpected_messages: int = 0
    num_draft_samples: int = 0
    num_draft_samples_skipped: int = 0
    num_acked: int = 0
    num_groups_held_for_weights: int = 0
    """Groups leased before this actor had the policy version they were issued at (a restarted actor
    starts from the weights on disk), held until that version was loaded instead of generated stale."""

    def as_dict(self) -> dict[str, Any]:
        """The totals as a plain dict."""
        return dataclasses.asdict(self)


def _add_into(totals: list[int], values: list[int]) -> None:
    """Element-wise totals += values, growing totals to the longer length (k differs between steps)."""
    totals.extend([0] * (len(values) - len(totals)))
    for j, value in enumerate(values):
        totals[j] += value


@dataclasses.dataclass(slots=True)
class _Group:
    delivery: Delivery
    prompt: PromptGroup
    completions: dict[int, Completion]


class RolloutLoop:
    """Pulls prompt groups up to the engine's free rows, steps the engine, sends finished groups.

    Call `run_once()` repeatedly from one thread. Collaborators are channel interfaces, so the
    loop runs the same over ZMQ (the actor) and in-process queues (unit tests).
    """

    def __init__(self, engine: Generator, *, prompts: Receiver, trajectories: Sender, sampling: SamplingDefaults,
                 name: str, group_size: int, policy_weights: WeightSink | None = None, draft_weights: WeightSink | None = None,
                 draft_samples: Sender | None = None, on_weights_changed: Callable[[], None] | None = None,
                 ack_wait_s: float = 0.05, hold_for_weights_s: float = 10.0):
        self.engine = engine
        self.name = name
        self.stats = RolloutStats(policy_version=engine.policy_version,
                                  draft_version=engine.draft_version)
        self._prompts, self._trajectories, self._draft_samples = prompts, trajectories, draft_samples
        self._policy_weights, self._draft_weights = policy_weights, draft_weights
        self._sampling = sampling
        self._group_size = group_size
        self._on_weights_changed = on_weights_changed
        self._ack_wait_s = ack_wait_s
        self._groups: dict[str, _Group] = {}
        # Leased groups waiting for the policy version they were issued at: prompt id -> (delivery, group, since).
        self._held: dict[str, tuple[Delivery, PromptGroup, float]] = {}
        self._hold_for_weights_s = hold_for_weights_s
        self._unacked: list[Delivery] = []
        self._rejected_versions: set[tuple[str, int]] = set()

    def run_once(self, idle_wait_s: float = 0.05) -> None:
        """One iteration: swap weights if due and possible, take prompts, one engine step, send, ack."""
        swap_due = self._swap_weights_if_due()
        busy = self.engine.has_unfinished()
        if self._held:
            self._start_held(wait_s=0.0 if busy else idle_wait_s)
        elif not swap_due:
            self._take_prompts(wait_s=0.0 if busy else idle_wait_s)
        if self.engine.has_unfinished():
            start = time.perf_counter()
            finished = self.engine.step()
            self.stats.engine_s += time.perf_counter() - start
            self.stats.num_engine_steps += 1
            for completion in finished:
                self._collect(completion)
        self._ack_confirmed(wait_s=0.0 if self.engine.has_unfinished() else self._ack_wait_s)

    def wait_for_policy(self, min_version: int, timeout_s: float) -> bool:
        """Block until policy `min_version` (or newer) is loaded; False on timeout. Used at start-up and
        after a checkpoint restore, before any prompt is taken."""
        if self.engine.policy_version >= min_version:
            return True
        if self._policy_weights is None or self._policy_weights.wait_for(min_version, timeout_s) is None:
            return False
        self._swap_weights_if_due()
        return self.engine.policy_version >= min_version

    # ------------------------------------------------------------------------------ weights
    def _swap_weights_if_due(self) -> bool:
        """Swap to newer weights once the engine is idle; True while a swap is waiting for it."""
        policy = self._newer(self._policy_weights, "policy", self.engine.policy_version)
        draft = self._newer(self._draft_weights, "draft", self.engine.draft_version)
        if policy is None and draft is None:
            return False
        if self.engine.has_unfinished():
            return True
        start = time.perf_counter()
        if policy is not None:
            version, weights = policy
            decoder = {n: t for n, t in weights.items() if not n.startswith(POLICY_EXTRA_PREFIXES)}
            if self._apply("policy", version, lambda: self.engine.update_policy(decoder, version)):
                self.stats.num_policy_swaps += 1
        if draft is not None:
            version, weights = draft
            if self._apply("draft", version, lambda: self.engine.update_draft(weights, version)):
                self.stats.num_draft_swaps += 1
        self.stats.policy_version = self.engine.policy_version
        self.stats.draft_version = self.engine.draft_version
        self.stats.swap_s += time.perf_counter() - start
        if self._on_weights_changed is not None:
            self._on_weights_changed()
        return False

    def _newer(self, sink: WeightSink | None, kind: str, current: int) -> tuple[int, dict] | None:
        latest = sink.latest() if sink is not None else None
        if latest is None or latest[0] <= current or (kind, latest[0]) in self._rejected_versions:
            return None
        return latest

    def _apply(self, kind: str, version: int, update: Callable[[], None]) -> bool:
        try:
            update()
        except WeightUpdateError:
            # A version whose names or shapes do not fit is refused once and counted; the current
            # weights keep serving (their version is what the trajectories record).
            self._rejected_versions.add((kind, version))
            self.stats.num_rejected_weights += 1
            return False
        return True

    # ------------------------------------------------------------------------------ prompts
    def _take_prompts(self, wait_s: float) -> None:
        engine = self.engine
        free_rows = engine.max_batch_size - engine.num_unfinished()
        # Lease only groups that can start now: a leased group waiting in the engine's queue is work
        # another actor could be doing. An idle engine takes one group even if it is wider than the batch.
        num_groups = free_rows // self._group_size or int(not engine.has_unfinished())
        if num_groups == 0:
            return
        for delivery in self._prompts.get_batch(max_items=num_groups, timeout_s=wait_s):
            group = delivery.item
            if type(group) is not PromptGroup:
                self.stats.num_unexpected_messages += 1
                self._prompts.ack(delivery)  # not ours to generate; acked so it is not redelivered forever
            elif group.prompt_id in self._groups:
                # The same group again while still generating it (its lease expired): keep generating
                # once, and ack the newest lease.
                self._groups[group.prompt_id].delivery = delivery
                self.stats.num_duplicate_deliveries += 1
            elif group.prompt_id in self._held:
                self._held[group.prompt_id] = (delivery, group, self._held[group.prompt_id][2])
                self.stats.num_duplicate_deliveries += 1
            elif group.policy_version > self.engine.policy_version:
                # Issued under weights this actor has not loaded yet (a restarted actor starts from the ones on
                # disk): generated now, a synchronous run would drop every sample as stale and fill the step
                # with another prompt. Held until that version is loaded, or hold_for_weights_s at most (then
                # generated with what is loaded; the controller judges staleness as always).
                self._held[group.prompt_id] = (delivery, group, time.monotonic())
                self.stats.num_groups_held_for_weights += 1
            else:
                self._start_group(delivery, group)

    def _start_held(self, wait_s: float) -> None:
        """Start the held groups the loaded policy now covers (or that waited long enough); while none is, wait up
        to wait_s for newer weights (the next run_once swaps them in, once the engine is idle)."""
        give_up = time.monotonic() - self._hold_for_weights_s
        ready = [key for key, (_, group, since) in self._held.items()
                 if group.policy_version <= self.engine.policy_version or since < give_up]
        for key in ready:
            delivery, group, _ = self._held.pop(key)
            self._start_group(delivery, group)
        if not ready and self._policy_weights is not None:
            self._policy_weights.wait_for(min(g.policy_version for _, g, _ in self._held.values()), wait_s)

    def _start_group(self, delivery: Delivery, group: PromptGroup) -> None:
        params = [SamplingParams(temperature=self._sampling.temperature, top_p=self._sampling.top_p,
                                 top_k=self._sampling.top_k, max_new_tokens=self._sampling.max_new_tokens,
                                 stop_token_ids=self._sampling.stop_token_ids, seed=group.seed + j)
                  for j in range(group.group_size)]
        requests = [Request(request_id=sample_id_of(group.prompt_id, j), prompt_ids=tuple(group.token_ids),
                            params=params[j], group_id=group.prompt_id) for j in range(group.group_size)]
        try:
            self.engine.add_request(requests[0])  # every sample shares the prompt: the first one vets it
        except (PromptTooLongError, InvalidRequestError) as exc:
            reason = DROP_LENGTH if isinstance(exc, PromptTooLongError) else DROP_BAD_PROMPT
            self._send_group([self._dropped(group, j, reason, str(exc)) for j in range(group.group_size)], delivery)
            self.stats.num_dropped_prompts += 1
            return
        for request in requests[1:]:
            self.engine.add_request(request)
        self._groups[group.prompt_id] = _Group(delivery, group, {})

    # ------------------------------------------------------------------------------ results
    def _collect(self, completion: Completion) -> None:
        prompt_id, sample = completion.request_id.rsplit("/", 1)
        group = self._groups[prompt_id]
        group.completions[int(sample)] = completion
        if len(group.completions) < group.prompt.group_size:
            return
        del self._groups[prompt_id]
        records = [self._record(group.prompt, j, group.completions[j]) for j in range(group.prompt.group_size)]
        self._send_group(records, group.delivery)

    def _send_group(self, records: list[RolloutRecord], delivery: Delivery) -> None:
        for record in records:
            self._trajectories.put(record, msg_id=record.msg_id)
            if self._draft_samples is not None and not record.drop_reason:
                self._offer_draft_sample(record)
            self.stats.num_completions += 1
            self.stats.num_tokens += len(record.token_ids)
            self.stats.num_verify_steps += record.num_verify_steps
            self.stats.num_accepted += record.num_accepted
            self.stats.num_drafted += sum(record.proposed_per_position)
            _add_into(self.stats.accepted_per_position, record.accepted_per_position)
            _add_into(self.stats.drafted_per_position, record.proposed_per_position)
        self.stats.num_groups += 1
        self._unacked.append(delivery)

    def _offer_draft_sample(self, record: RolloutRecord) -> None:
        # Draft training data is best effort: a slow draft-refresh actor must never stall rollouts.
        try:
            self._draft_samples.put(record, msg_id=record.msg_id, timeout_s=0.0)
            self.stats.num_draft_samples += 1
        except BackPressureTimeout:
            self.stats.num_draft_samples_skipped += 1

    def _ack_confirmed(self, wait_s: float) -> None:
        if self._unacked and self._trajectories.flush(timeout_s=wait_s):
            self._prompts.ack_many(self._unacked)
            self.stats.num_acked += len(self._unacked)
            self._unacked = []

    def _record(self, group: PromptGroup, sample: int, completion: Completion) -> RolloutRecord:
        stats = completion.stats
        return RolloutRecord(
            prompt_id=group.prompt_id, prompt_index=group.prompt_index, sample_index=sample,
            group_size=group.group_size, prompt_token_ids=list(group.token_ids), token_ids=list(completion.token_ids),
            logprobs=torch.tensor(completion.logprobs, dtype=torch.float32), finish_reason=completion.finish_reason,
            policy_version=completion.policy_version, draft_version=completion.draft_version,
            proposed_per_position=list(stats.drafted_per_position),
            accepted_per_position=list(stats.accepted_per_position), num_verify_steps=stats.num_verify_steps,
            num_decode_steps=stats.num_decode_steps, actor=self.name, issued_at=group.issued_at,
            generated_at=time.time())

    def _dropped(self, group: PromptGroup, sample: int, reason: str, detail: str) -> RolloutRecord:
        return RolloutRecord(
            prompt_id=group.prompt_id, prompt_index=group.prompt_index, sample_index=sample,
            group_size=group.group_size, prompt_token_ids=list(group.token_ids), token_ids=[],
            logprobs=torch.zeros(0), finish_reason="abort", policy_version=self.engine.policy_version,
            draft_version=self.stats.draft_version, proposed_per_position=[], accepted_per_position=[],
            num_verify_steps=0, num_decode_steps=0, actor=self.name, issued_at=group.issued_at,
            generated_at=time.time(), drop_reason=reason, error=detail[:1000])
