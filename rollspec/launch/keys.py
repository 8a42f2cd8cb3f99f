"""The run's data-plane keys: created in the driver (the controller) once per run, handed to each
actor as its role's SecurityConfig in the Ray constructor arguments, never written to disk and never
sent over ZeroMQ (the channels they protect cannot be used to get them).

    security = role_security(config.security)     # {"controller": ..., "rollout": ..., ...}
    Broker(queues, security=security["controller"])
    fleet.start_rollouts(..., security=security["rollout"])

A restarted actor gets the same keys (Ray re-runs its constructor with the same arguments); a new run,
including a `--resume`, gets new ones, so nothing from an earlier run is accepted.
"""

from rollspec.launch.config_sections import SecuritySection
from rollspec.transport import RunKeys, SecurityConfig
from rollspec.transport.keys import ROLES


def role_security(section: SecuritySection, keys: RunKeys | None = None) -> dict[str, SecurityConfig]:
    """Each role's SecurityConfig under one fresh (or the given) key set."""
    keys = keys or RunKeys.create()
    return {role: SecurityConfig(curve=section.curve, keys=keys.for_role(role), sign_weights=section.sign_weights)
            for role in ROLES}


def describe(section: SecuritySection) -> str:
    """One line for the start-up log."""
    curve = {"auto": "CURVE on channels reachable from other hosts, loopback ones plaintext",
             "on": "CURVE on every channel", "off": "CURVE off (plaintext)"}[section.curve]
    return f"data plane: {curve}; weight versions {'signed' if section.sign_weights else 'NOT signed'}"
