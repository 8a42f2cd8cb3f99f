"""ZeroMQ data plane: codec, bounded reliable channels, versioned weight broadcast.

Work queues (hosted by the controller's Broker; leases, acks, redelivery, dedup, back-pressure):
    Broker, QueueConfig, ZmqProducer, ZmqConsumer (Sender / Receiver), InProcQueue for unit tests.
Weights (one publisher, N subscribers; chunked, CRC-checked, versioned):
    WeightPublisher, WeightSubscriber (WeightSource / WeightSink), InProcBroadcast for unit tests.
Messages: @register_schema frozen classes (PromptItem, Trajectory, ...), encode / decode.
Faults for tests and chaos/: FaultPlan passed to any endpoint.
Security: RunKeys (per run, in the controller) -> ChannelKeys per role (to actors through Ray) ->
    SecurityConfig(curve="auto"|"on"|"off", keys=...) passed to any endpoint: CURVE with a ZAP
    authenticator admitting only the run's client keys, and HMAC-signed weight versions.
"""

from rollspec.transport.broadcast import InProcBroadcast, WeightSink, WeightSource
from rollspec.transport.broker import Broker
from rollspec.transport.channel import Delivery, Receiver, Sender
from rollspec.transport.codec import decode, encode
from rollspec.transport.config import BroadcastConfig, CodecLimits, ConsumerConfig, ProducerConfig, QueueConfig
from rollspec.transport.consumer import ZmqConsumer
from rollspec.transport.errors import (
    BackPressureTimeout,
    ChannelClosed,
    ConfigError,
    MessageRejected,
    RejectReason,
    SchemaError,
    TransportError,
    VersionError,
)
from rollspec.transport.faults import NO_FAULTS, FaultPlan
from rollspec.transport.fields import limit
from rollspec.transport.inproc import InProcQueue
from rollspec.transport.keys import ChannelKeys, CurveKeyPair, RunKeys
from rollspec.transport.lease_queue import DroppedItem
from rollspec.transport.producer import ZmqProducer
from rollspec.transport.registry import DEFAULT_REGISTRY, SchemaRegistry, register_schema
from rollspec.transport.schemas import PromptItem, SignedManifest, Trajectory, WeightChunk, WeightManifest
from rollspec.transport.security import NO_SECURITY, SecurityConfig
from rollspec.transport.stats import BroadcastStats, ConsumerStats, ProducerStats, QueueStats
from rollspec.transport.weight_publisher import WeightPublisher
from rollspec.transport.weight_subscriber import WeightSubscriber

__all__ = [
    "BackPressureTimeout", "BroadcastConfig", "BroadcastStats", "Broker", "ChannelClosed", "ChannelKeys",
    "CodecLimits", "ConfigError", "ConsumerConfig", "ConsumerStats", "CurveKeyPair", "DEFAULT_REGISTRY", "Delivery",
    "DroppedItem", "FaultPlan", "InProcBroadcast", "InProcQueue", "MessageRejected", "NO_FAULTS", "NO_SECURITY",
    "ProducerConfig", "ProducerStats", "PromptItem", "QueueConfig", "QueueStats", "Receiver", "RejectReason",
    "RunKeys", "SchemaError", "SchemaRegistry", "SecurityConfig", "Sender", "SignedManifest", "TransportError",
    "Trajectory", "VersionError", "WeightChunk", "WeightManifest", "WeightPublisher", "WeightSink", "WeightSource",
    "WeightSubscriber", "ZmqConsumer", "ZmqProducer", "decode", "encode", "limit", "register_schema",
]
