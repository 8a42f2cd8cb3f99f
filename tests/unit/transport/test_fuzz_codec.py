"""Fuzzing everything that parses inbound frames: malformed messages are rejected and counted, never
crash a handler (which would stop an endpoint's I/O thread) and never allocate beyond their own size.

Default run: 6,000 mutated messages and 300 hypothesis examples (seconds). `-m slow`: 100,000 mutated
messages for each of three seeds (`rollspec.transport.fuzz`) and 20,000 hypothesis examples (hypothesis
generates about 100 structured messages/s here, the mutator about 5,000).
"""

import logging
import struct
import tracemalloc
import zlib

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rollspec.transport import codec
from rollspec.transport.errors import MessageRejected, RejectReason
from rollspec.transport.fuzz import FUZZ_BROADCAST, _Targets, run_fuzz
from rollspec.transport.keys import RunKeys
from rollspec.transport.protocol import Ack, AckConfirm, Deliver, Detach, Heartbeat, PutAck, PutBatch
from rollspec.transport.registry import schema_info
from rollspec.transport.schemas import (
    ChunkRequest,
    PromptItem,
    SignedManifest,
    Trajectory,
    WeightChunk,
    WeightManifest,
    WeightQuery,
)
from rollspec.transport.security import SecurityConfig
from rollspec.transport.weight_subscriber import SubscriberCore

SCHEMAS = (Ack, AckConfirm, Deliver, Detach, Heartbeat, PutAck, PutBatch, ChunkRequest, PromptItem, SignedManifest,
           Trajectory, WeightChunk, WeightManifest, WeightQuery)
TAGS = [(schema_info(cls).tag, schema_info(cls).version) for cls in SCHEMAS]
TARGETS = ("decode", "broker", "consumer", "producer", "publisher", "subscriber")


@pytest.fixture(autouse=True)
def _quiet():
    """Rejections are logged (with backoff); thousands of them would only slow the run down."""
    logging.disable(logging.ERROR)
    yield
    logging.disable(logging.NOTSET)


def _framed(body: bytes) -> bytes:
    return struct.pack("<I", zlib.crc32(body)) + body


# --- directed cases (each one a bug class the fuzzers look for) ----------------------------------------
def test_an_empty_tensor_with_absurd_dimensions_is_rejected_not_a_torch_error():
    # Found by the fuzzer: numel 0 (so 0 bytes, matching an empty frame) but torch overflows the strides.
    head = struct.pack("<IBB", 0, 7, 3) + b"".join(struct.pack("<q", d) for d in (0, 2**62, 2**62))
    body = msgpack.packb(["rs.weight_chunk", 1, [7, 0, 0, msgpack.ExtType(1, head)]])
    with pytest.raises(MessageRejected) as info:
        codec.decode([_framed(body), b""])
    assert info.value.reason is RejectReason.OVERSIZED


@pytest.mark.parametrize("liar", [b"\xdb\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff", b"\xdd\xff\xff\xff\xff",
                                  b"\xdf\xff\xff\xff\xff", b"\x91" * 200_000])
def test_declared_lengths_beyond_the_data_allocate_nothing_for_them(liar):
    tracemalloc.start()
    try:
        with pytest.raises(MessageRejected):
            codec.decode([_framed(liar + b"\0" * 16)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * len(liar) + (1 << 20), f"{peak} bytes traced for a {len(liar)}-byte message"


def test_a_subscriber_refuses_a_huge_version_before_allocating_it():
    core = SubscriberCore(FUZZ_BROADCAST, SecurityConfig())
    core.loop = _NoLoop()
    huge = WeightManifest(version=2, total_bytes=1 << 40, chunk_bytes=1 << 30, chunk_crcs=[0] * 1024,
                          names=["w"], dtypes=["uint8"], shapes=[[1 << 40]], offsets=[0])
    core.on_message([zmq.Frame(bytes(f)) for f in codec.encode(huge)])
    assert core.fetch is None and core.rejects.counts == {"oversized": 1}


class _NoLoop:
    def send(self, frames):
        pass

    def wake(self):
        pass


# --- mutation fuzzer ---------------------------------------------------------------------------------
def test_mutated_protocol_messages_never_crash_a_handler():
    report = run_fuzz(6000, seed=7, trace_every=25)
    assert report.crashes == []
    assert set(report.per_target) == set(TARGETS) and report.rejected > 0
    assert report.max_traced_alloc_bytes < 4 * report.max_input_bytes + (4 << 20)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mutation_fuzzing_100k_cases_per_seed(seed):
    report = run_fuzz(100_000, seed=seed, trace_every=100)
    print(f"seed {seed}: {report.cases} cases in {report.seconds:.1f}s, {report.rejected} decode rejections, "
          f"max traced allocation {report.max_traced_alloc_bytes} B for inputs up to {report.max_input_bytes} B")
    assert report.crashes == [], report.crashes[:5]
    assert report.max_traced_alloc_bytes < 4 * report.max_input_bytes + (4 << 20)


# --- hypothesis: structurally valid msgpack under real tags, arbitrary values --------------------------
_leaf = (st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats() | st.text(max_size=24)
         | st.binary(max_size=48))
_tree = st.recursive(_leaf, lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner,
                                                                                         max_size=4), max_leaves=24)
_tensor_ext = st.builds(lambda index, code, dims: msgpack.ExtType(1, struct.pack("<IBB", index, code, len(dims))
                                                                  + b"".join(struct.pack("<q", d) for d in dims)),
                        st.integers(0, 3), st.integers(0, 12), st.lists(st.integers(-2, 2**63 - 1), max_size=9))
_field = _tree | _tensor_ext | st.lists(st.integers(-2, 2**33), max_size=12)
_tag = st.sampled_from(TAGS) | st.tuples(st.text(max_size=12), st.integers(-1, 3))
_body = st.builds(lambda tag, fields: msgpack.packb([tag[0], tag[1], fields]), _tag, st.lists(_field, max_size=14))
_frames = st.lists(st.binary(max_size=96), max_size=3)
_TARGETS = _Targets(RunKeys.create())


def _check_case(target: str, body: bytes, frames: list[bytes]) -> None:
    message = [_framed(body), *frames]
    if target == "decode":
        try:
            msg = codec.decode(message)
        except MessageRejected:
            return
        assert type(msg) in SCHEMAS  # whatever gets through is a validated schema instance
    else:
        _TARGETS.feed(target, message)  # raises only on a crash


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(TARGETS), _body, _frames)
def test_hypothesis_messages_never_crash_decode_or_a_handler(target, body, frames):
    _check_case(target, body, frames)


@pytest.mark.slow
@settings(max_examples=20_000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.sampled_from(TARGETS), _body, _frames)
def test_hypothesis_20k_messages_never_crash_decode_or_a_handler(target, body, frames):
    _check_case(target, body, frames)
