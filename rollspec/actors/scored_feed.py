"""Learner rank 0's intake from the `scored` queue: deliveries into a BatchAssembler, batches out.

Acks: records of groups dropped (stale, forgotten, late duplicates) are acked at once; records of
a batch only after the learner step that trained them is done (`ack`), so a learner that dies
mid-step gets them redelivered instead of losing them.
"""

import time

from rollspec.actors.batch_assembler import Assembled, BatchAssembler, GroupResolution
from rollspec.actors.config import SCORED, FeedSpec
from rollspec.actors.messages import RolloutRecord
from rollspec.scheduler import AdmissionController
from rollspec.transport import NO_SECURITY, ConsumerConfig, Delivery, Receiver, SecurityConfig, ZmqConsumer

POLL_SLICE_S = 0.05


class ScoredFeed:
    """Polls `scored` until a full batch for the asked step is buffered or the wait runs out."""

    def __init__(self, spec: FeedSpec, *, broker_address: str | None = None, receiver: Receiver | None = None,
                 security: SecurityConfig = NO_SECURITY):
        admission = spec.admission
        # The broker leases at most window_items un-acked records to this consumer: it must hold
        # every group that may be buffered at once (s + 1 steps' worth, plus the step in training).
        window = max(1024, 4 * admission.prompts_per_step * admission.group_size * (admission.max_staleness + 2))
        self._scored = receiver or ZmqConsumer(broker_address, SCORED, config=ConsumerConfig(window_items=window),
                                               security=security, faults=spec.faults.for_endpoint(f"learner/{SCORED}"))
        self._assembler = BatchAssembler(AdmissionController(admission), vocab_size=spec.vocab_size,
                                         drop_truncated=spec.drop_truncated)
        self._poll_items = spec.poll_items
        self.num_unexpected_messages = 0

    def poll(self, step: int, *, forget: list[str], wait_s: float) -> Assembled:
        """Buffer what arrives for up to wait_s; returns as soon as a batch for `step` is ready.

        The result's resolutions include every group dropped meanwhile (stale for `step`), so the
        controller can issue replacements while this step is still short of groups.
        """
        self._scored.ack_many(self._assembler.forget(forget))
        resolutions: list[GroupResolution] = []
        deadline = time.monotonic() + wait_s
        while True:
            for delivery in self._scored.get_batch(self._poll_items, timeout_s=POLL_SLICE_S):
                self._add(delivery)
            out = self._assembler.take(step)
            self._scored.ack_many(out.to_ack_now)
            resolutions.extend(out.resolutions)
            if out.samples is not None or time.monotonic() >= deadline:
                return Assembled(out.samples, resolutions, [], out.to_ack_after_step)

    def ack(self, deliveries: list[Delivery]) -> None:
        """Ack a trained batch's records (call once its optimizer step is done)."""
        self._scored.ack_many(deliveries)

    def stats(self) -> dict:
        """Groups buffered, duplicate and late records, the consumer's counters."""
        return {"buffered_groups": self._assembler.num_buffered_groups,
                "duplicate_records": self._assembler.num_duplicates, "late_records": self._assembler.num_late,
                "unexpected_messages": self.num_unexpected_messages, **self._scored.stats().as_dict()}

    def close(self) -> None:
        """Detach from the scored queue; un-acked records go back to it."""
        self._scored.close()

    def _add(self, delivery: Delivery) -> None:
        if type(delivery.item) is not RolloutRecord:
            self.num_unexpected_messages += 1
            self._scored.ack(delivery)
            return
        superseded = self._assembler.add(delivery)
        if superseded is not None:
            self._scored.ack(superseded)
