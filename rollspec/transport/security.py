"""When a socket uses CURVE, and whether weight versions are signed: the endpoints' security config.

    SecurityConfig()                                  # curve="auto", no keys: loopback-only plaintext
    SecurityConfig(keys=run_keys.for_role("rollout")) # CURVE off-host, signed weights everywhere
    SecurityConfig(curve="on", keys=...)              # CURVE on loopback too (what the tests use)

`auto` turns CURVE on for any socket that binds, or connects to, an address other hosts could reach:
a server on 0.0.0.0 or a real interface is never plaintext unless `curve="off"` says so explicitly
(and then a warning is logged). A client decides from the address it connects to, so hand clients the
address the server advertises (its `address` attribute), or set `curve` explicitly on both sides.
"""

import ipaddress
import logging
from dataclasses import dataclass
from typing import Literal

from rollspec.transport.errors import ConfigError
from rollspec.transport.keys import ChannelKeys

log = logging.getLogger(__name__)
CurveMode = Literal["auto", "on", "off"]
CURVE_MODES = ("auto", "on", "off")
_LOCAL_SCHEMES = ("ipc", "inproc")  # never leave the machine; ipc is guarded by file permissions


@dataclass(frozen=True, slots=True, kw_only=True)
class SecurityConfig:
    """Security of one endpoint. Picklable, so an actor can receive it whole as a Ray argument."""

    curve: CurveMode = "auto"
    """auto: CURVE for non-loopback addresses; on: always (needs keys); off: never (warned off-host)."""
    keys: ChannelKeys | None = None
    """The role's keys from the run's RunKeys; without them only plaintext loopback is possible."""
    sign_weights: bool = True
    """With keys: publishers sign weight manifests and subscribers apply only correctly signed ones."""

    def __post_init__(self) -> None:
        if self.curve not in CURVE_MODES:
            raise ConfigError("SecurityConfig.curve", self.curve, f"one of {CURVE_MODES}")
        if self.curve == "on" and self.keys is None:
            raise ConfigError("SecurityConfig.keys", None, "the run's keys when curve='on'")

    def uses_curve(self, address: str, *, binds: bool) -> bool:
        """Whether a socket binding (or connecting to) `address` runs CURVE; ConfigError when auto mode
        needs CURVE for a non-loopback address and there are no keys, or a server lacks the server key."""
        if self.curve == "off":
            if binds and not is_loopback(address):
                log.warning("binding %s without CURVE (security.curve=off): any host that reaches it can "
                            "send to and read from this channel", address)
            return False
        curve = self.curve == "on" or not is_loopback(address)
        if curve and self.keys is None:
            raise ConfigError("SecurityConfig.keys", None,
                              f"the run's keys: {address} is reachable from other hosts, so security.curve=auto "
                              "needs CURVE (or set security.curve=off to accept plaintext explicitly)")
        if curve and binds and self.keys is not None and not self.keys.can_serve:
            raise ConfigError("SecurityConfig.keys", self.keys.role, "keys of a role that binds servers "
                              "(RunKeys.for_role(role, serves=True))")
        return curve

    @property
    def weights_key(self) -> bytes | None:
        """The MAC key for weight manifests, or None when versions are not authenticated."""
        return self.keys.weights_key if self.keys is not None and self.sign_weights else None

    @property
    def run_id(self) -> str:
        """The run these keys belong to ('' without keys)."""
        return self.keys.run_id if self.keys is not None else ""


NO_SECURITY = SecurityConfig()
"""The default: plaintext on loopback, and a ConfigError for anything reachable from other hosts."""


def is_loopback(address: str) -> bool:
    """True for ipc://, inproc:// and tcp:// endpoints on 127.0.0.0/8, ::1 or localhost. Wildcards
    (0.0.0.0, *, ::), interface names and every other host count as reachable from other machines."""
    scheme, _, rest = address.partition("://")
    if scheme in _LOCAL_SCHEMES:
        return True
    if scheme != "tcp":
        return False
    endpoint = rest.split(";")[-1]  # tcp://source;destination: the destination decides
    host = endpoint[1:endpoint.find("]")] if endpoint.startswith("[") else endpoint.rsplit(":", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
