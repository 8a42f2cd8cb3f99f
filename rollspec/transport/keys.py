"""Per-run key material: CURVE key pairs for every ZeroMQ channel and the MAC key for weight versions.

    run_keys = RunKeys.create()                       # in the controller, once per run; never on disk
    rollout_keys = run_keys.for_role("rollout")       # passed to the actor as a Ray constructor argument
    ZmqConsumer(address, "prompts", security=SecurityConfig(keys=rollout_keys))

Keys travel only through Ray (pickled constructor arguments), never over ZeroMQ: the channels they
protect cannot be used to obtain them. One server key pair serves every socket that binds (broker,
weight publishers), so a client pins "a server of this run" with one public key; every role has its
own client key pair, which servers accept only if it belongs to the run, and which names the role in
logs. A role gets the server's secret key only if it binds a server socket.
"""

import secrets
from dataclasses import dataclass, field

import zmq
from zmq.utils import z85

from rollspec.transport.errors import ConfigError

Z85_KEY_LEN = 40
"""A CURVE key (32 bytes) in Z85 text, the form libzmq's socket options take."""
MAC_KEY_BYTES = 32
ROLES = ("controller", "rollout", "reward", "learner", "draft_refresh")
"""Roles of a rollspec run: each gets its own client key pair."""
SERVER_ROLES = ("controller", "learner", "draft_refresh")
"""Roles that bind server sockets (broker; policy weight publisher; draft weight publisher)."""


def _check_z85_key(where: str, key: bytes) -> None:
    if type(key) is not bytes or len(key) != Z85_KEY_LEN:
        raise ConfigError(where, "<redacted>" if "secret" in where else key, f"{Z85_KEY_LEN} bytes of Z85 text")
    try:
        z85.decode(key)
    except (ValueError, KeyError, IndexError):
        raise ConfigError(where, "<redacted>" if "secret" in where else key, "valid Z85 text") from None


@dataclass(frozen=True, slots=True)
class CurveKeyPair:
    """A CURVE key pair in Z85 text. The secret never appears in repr() (logs, tracebacks, Ray's UI)."""

    public: bytes
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check_z85_key("CurveKeyPair.public", self.public)
        _check_z85_key("CurveKeyPair.secret", self.secret)
        if zmq.curve_public(self.secret) != self.public:
            raise ConfigError("CurveKeyPair.public", self.public, "the public key of the given secret key")

    @classmethod
    def generate(cls) -> "CurveKeyPair":
        """A fresh key pair from libzmq (libsodium's random source)."""
        public, secret = zmq.curve_keypair()
        return cls(public=public, secret=secret)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelKeys:
    """The keys one process's endpoints need: what a role receives from the controller.

    Clients use `client` and pin `server_public`; servers (only when `server` is set) present `server`
    and accept exactly `allowed_clients`. `weights_key` signs (publishers) or verifies (subscribers)
    weight manifests; `run_id` is bound into every signature so an earlier run's versions are refused.
    """

    run_id: str
    role: str
    server_public: bytes
    client: CurveKeyPair
    allowed_clients: frozenset[bytes]
    weights_key: bytes = field(repr=False)
    server: CurveKeyPair | None = None
    """The run's server key pair; given only to roles that bind server sockets (see SERVER_ROLES)."""

    def __post_init__(self) -> None:
        if not self.run_id or not self.role:
            raise ConfigError("ChannelKeys.run_id/role", (self.run_id, self.role), "non-empty strings")
        _check_z85_key("ChannelKeys.server_public", self.server_public)
        for key in self.allowed_clients:
            _check_z85_key("ChannelKeys.allowed_clients", key)
        if len(self.weights_key) < 16:
            raise ConfigError("ChannelKeys.weights_key", "<redacted>", ">= 16 random bytes")
        if self.server is not None and self.server.public != self.server_public:
            raise ConfigError("ChannelKeys.server", self.server.public, f"the run's server key {self.server_public!r}")

    @property
    def can_serve(self) -> bool:
        """Whether these keys may bind a CURVE server socket."""
        return self.server is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunKeys:
    """All keys of one run. Lives in the controller; actors get `for_role(...)` subsets only."""

    run_id: str
    server: CurveKeyPair
    clients: tuple[tuple[str, CurveKeyPair], ...]
    weights_key: bytes = field(repr=False)

    @classmethod
    def create(cls, roles: tuple[str, ...] = ROLES) -> "RunKeys":
        """Fresh keys for a new run: a random run id, one server pair, one client pair per role."""
        if not roles or len(set(roles)) != len(roles):
            raise ConfigError("RunKeys.roles", roles, "at least one role, no duplicates")
        return cls(run_id=secrets.token_hex(8), server=CurveKeyPair.generate(),
                   clients=tuple((role, CurveKeyPair.generate()) for role in roles),
                   weights_key=secrets.token_bytes(MAC_KEY_BYTES))

    @property
    def allowed_clients(self) -> frozenset[bytes]:
        """Every role's client public key: the only keys a server of this run accepts."""
        return frozenset(pair.public for _, pair in self.clients)

    def for_role(self, role: str, *, serves: bool | None = None) -> ChannelKeys:
        """The keys of `role`; `serves` (default: role in SERVER_ROLES) adds the server's secret key."""
        pairs = dict(self.clients)
        if role not in pairs:
            raise ConfigError("role", role, f"one of {sorted(pairs)}")
        serves = role in SERVER_ROLES if serves is None else serves
        return ChannelKeys(run_id=self.run_id, role=role, server_public=self.server.public, client=pairs[role],
                           allowed_clients=self.allowed_clients, weights_key=self.weights_key,
                           server=self.server if serves else None)
