"""What the controller checkpoints besides the learner: step, versions, the prompt cursor, the ledger
of every issued group, counters, and the log of checkpoint restores (invariant 4: weights go back
only by an explicit, recorded restore)."""

import dataclasses
from typing import Any

from rollspec.actors.ledger import Ledger

STATE_FORMAT = 1


class ControllerStateError(ValueError):
    """A controller state file that is not one this code wrote."""


@dataclasses.dataclass(slots=True, kw_only=True)
class ControllerState:
    """The controller's durable state. `step` learner steps are done and `policy_version == step`."""

    step: int = 0
    policy_version: int = 0
    draft_version: int = 0
    next_prompt_index: int = 0
    ledger: Ledger = dataclasses.field(default_factory=Ledger)
    counters: dict[str, float] = dataclasses.field(default_factory=dict)
    restores: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    learner_fingerprint: dict[str, float] = dataclasses.field(default_factory=dict)
    """Parameter and optimizer-state checksums at this step (checked again after a restore)."""

    def count(self, name: str, amount: float = 1) -> None:
        """Add `amount` to counter `name` (created at 0)."""
        self.counters[name] = self.counters.get(name, 0) + amount

    def to_json(self) -> dict[str, Any]:
        """The state as JSON-able data (what controller.json holds)."""
        return {"format": STATE_FORMAT, "step": self.step, "policy_version": self.policy_version,
                "draft_version": self.draft_version, "next_prompt_index": self.next_prompt_index,
                "ledger": self.ledger.to_json(), "counters": dict(self.counters), "restores": list(self.restores),
                "learner_fingerprint": dict(self.learner_fingerprint)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ControllerState":
        """Rebuild from `to_json` output; ControllerStateError if it is not such output."""
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
            raise ControllerStateError(f"controller state format {data.get('format') if isinstance(data, dict) else data!r}"
                                       f" is not {STATE_FORMAT}")
        try:
            return cls(step=data["step"], policy_version=data["policy_version"], draft_version=data["draft_version"],
                       next_prompt_index=data["next_prompt_index"], ledger=Ledger.from_json(data["ledger"]),
                       counters=dict(data["counters"]), restores=list(data["restores"]),
                       learner_fingerprint=dict(data["learner_fingerprint"]))
        except (KeyError, TypeError) as exc:
            raise ControllerStateError(f"controller state is missing or has a malformed field: {exc}") from exc
