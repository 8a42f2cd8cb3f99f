"""The controller's ledger of issued prompt groups: invariant 2 as a data structure.

Every group the controller issues is recorded, then resolved exactly once: trained in a learner
step (each sample trained or dropped with its own reason) or dropped as a whole with a reason.
A second resolution, a resolution of a group never issued, or a drop reason left empty is a
violation: counted, kept in `violations` and never applied, so the first outcome stands.

Pure logic with a JSON form, so checkpoints carry it and `--resume` re-issues exactly the groups
whose training the checkpoint does not cover.
"""

import dataclasses
from collections import Counter
from collections.abc import Iterable
from typing import Any

from rollspec.actors.batch_assembler import GroupResolution

ISSUED, TRAINED, DROPPED = "issued", "trained", "dropped"


@dataclasses.dataclass(slots=True, kw_only=True)
class GroupEntry:
    """One prompt group's history. `step` is the learner step that trained it (None unless trained)."""

    prompt_index: int
    group_size: int
    issued_version: int
    num_issues: int = 1
    state: str = ISSUED
    step: int | None = None
    policy_version: int | None = None
    reason: str = ""
    sample_reasons: list[str] = dataclasses.field(default_factory=list)
    error: str = ""
    """The first error reported for one of its samples (e.g. what the reward function raised)."""


class Ledger:
    """Issued groups by prompt id, in issue order."""

    def __init__(self) -> None:
        self.entries: dict[str, GroupEntry] = {}
        self.violations: list[str] = []

    def issue(self, prompt_id: str, *, prompt_index: int, group_size: int, policy_version: int) -> None:
        """Record a newly issued group; issuing an id twice is a violation (use `reissue`)."""
        if prompt_id in self.entries:
            self.violations.append(f"{prompt_id}: issued twice")
            return
        self.entries[prompt_id] = GroupEntry(prompt_index=prompt_index, group_size=group_size,
                                             issued_version=policy_version)

    def reissue(self, prompt_id: str, *, policy_version: int) -> None:
        """Issue an unresolved group again (after a resume: its earlier issue died with the old run)."""
        entry = self.entries[prompt_id]
        if entry.state != ISSUED:
            self.violations.append(f"{prompt_id}: re-issued although {entry.state}")
            return
        entry.num_issues += 1
        entry.issued_version = policy_version

    def resolve(self, resolution: GroupResolution, step: int) -> bool:
        """Apply the learner's resolution of one group (trained in `step`, or dropped); False if it is a
        violation and was not applied."""
        entry = self._unresolved(resolution.prompt_id, "resolved")
        if entry is None:
            return False
        if len(resolution.sample_reasons) != entry.group_size:
            self.violations.append(f"{resolution.prompt_id}: {len(resolution.sample_reasons)} sample outcomes "
                                   f"for a group of {entry.group_size}")
            return False
        if resolution.trained:
            entry.state, entry.step = TRAINED, step
        else:
            if not resolution.reason:
                self.violations.append(f"{resolution.prompt_id}: dropped without a reason")
                return False
            entry.state, entry.reason = DROPPED, resolution.reason
        entry.policy_version = resolution.policy_version
        entry.sample_reasons = list(resolution.sample_reasons)
        entry.error = resolution.first_error
        return True

    def drop(self, prompt_id: str, reason: str) -> bool:
        """The controller drops a whole group (transport gave up on it, or the run ended before it
        trained); False if it is a violation and was not applied."""
        entry = self._unresolved(prompt_id, f"dropped ({reason})")
        if entry is None:
            return False
        if not reason:
            self.violations.append(f"{prompt_id}: dropped without a reason")
            return False
        entry.state, entry.reason = DROPPED, reason
        entry.sample_reasons = [reason] * entry.group_size
        return True

    def _unresolved(self, prompt_id: str, what: str) -> GroupEntry | None:
        entry = self.entries.get(prompt_id)
        if entry is None:
            self.violations.append(f"{prompt_id}: {what} but never issued")
            return None
        if entry.state != ISSUED:
            self.violations.append(f"{prompt_id}: {what} but already {entry.state}")
            return None
        return entry

    # ------------------------------------------------------------------------------ queries
    def outstanding(self) -> list[str]:
        """Issued groups not yet resolved, in issue order."""
        return [pid for pid, entry in self.entries.items() if entry.state == ISSUED]

    def num_outstanding_samples(self) -> int:
        """Samples of the groups not yet resolved (what admission counts as pending)."""
        return sum(e.group_size for e in self.entries.values() if e.state == ISSUED)

    def num_groups(self, state: str) -> int:
        """Groups currently in `state` (issued, trained or dropped)."""
        return sum(1 for e in self.entries.values() if e.state == state)

    def sample_counts(self) -> Counter:
        """Samples by outcome: 'trained', or the drop reason."""
        counts: Counter = Counter()
        for entry in self.entries.values():
            if entry.state == ISSUED:
                counts[ISSUED] += entry.group_size
            else:
                counts.update(reason or TRAINED for reason in entry.sample_reasons)
        return counts

    def problems(self, *, outstanding_ok: bool = False) -> list[str]:
        """Invariant 2 once the run is over: every group resolved, every drop with a reason, nothing
        resolved twice. Empty means it holds. `outstanding_ok`: a run stopped early, whose unresolved
        groups its checkpoint keeps for --resume to re-issue."""
        out = list(self.violations)
        for prompt_id, entry in self.entries.items():
            if entry.state == ISSUED:
                if not outstanding_ok:
                    out.append(f"{prompt_id}: never resolved")
            elif entry.state == TRAINED and entry.step is None:
                out.append(f"{prompt_id}: trained at no step")
            elif entry.state == DROPPED and not entry.reason:
                out.append(f"{prompt_id}: dropped without a reason")
            elif len(entry.sample_reasons) != entry.group_size:
                out.append(f"{prompt_id}: {len(entry.sample_reasons)} sample outcomes for {entry.group_size}")
        return out

    def trained_versions(self) -> Iterable[tuple[str, int, int]]:
        """(prompt id, learner step, policy version) of every trained group."""
        return ((pid, e.step, e.policy_version) for pid, e in self.entries.items() if e.state == TRAINED)

    # ------------------------------------------------------------------------------ persistence
    def to_json(self) -> dict[str, Any]:
        """Every entry and violation as JSON-able data."""
        return {"entries": {pid: dataclasses.asdict(e) for pid, e in self.entries.items()},
                "violations": list(self.violations)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Ledger":
        """Rebuild a ledger from `to_json` output."""
        ledger = cls()
        ledger.entries = {pid: GroupEntry(**fields) for pid, fields in data["entries"].items()}
        ledger.violations = list(data["violations"])
        return ledger
