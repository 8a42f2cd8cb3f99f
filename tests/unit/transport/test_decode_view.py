"""codec.decode_view (the consumer's Deliver and the broker's Ack in one C call) accepts exactly what
decode() accepts as that class, with equal fields, and refuses everything else with None so that
decode() decides and words it."""

import struct
import zlib

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rollspec.transport import codec
from rollspec.transport.errors import MessageRejected
from rollspec.transport.protocol import Ack, AckConfirm, Deliver

small_ints = st.lists(st.integers(-1, 3), max_size=4)
ids = st.lists(st.sampled_from(["a", "b", "", "x" * 513]), max_size=3)


def _frame(values: list, tag: str = "rs.deliver", version: int = 4) -> bytes:
    body = msgpack.packb([tag, version, values])
    return struct.pack("<I", zlib.crc32(body)) + body


def _decoded(frame: bytes):
    try:
        return codec.decode([frame])
    except MessageRejected:
        return None


def _fields(msg, names) -> list:
    return [getattr(msg, name) for name in names]


DELIVER = Deliver.__schema__.names
ACK = Ack.__schema__.names


def test_a_valid_deliver_and_ack_come_out_with_the_fields_decode_gives():
    deliver = Deliver(segment=3, parcel=9, count=3, live=[0, 2], attempts=[1, 2], ids=["a", "b", "c"], id_prefix="",
                      id_first=0, sizes=[1, 2, 3], nframes=[0, 1, 1], blob_crc=7, frame_crcs=[], packed=False,
                      confirmed=[1, 2], confirmed_parcels=[4])
    frame = codec.encode(deliver)[0]
    assert _fields(codec.decode_view(memoryview(frame), Deliver), DELIVER) == _fields(deliver, DELIVER)
    ack = Ack(queue="q", parcels=[1], acked=[2, 3], rejected=[4, 5], reasons=["malformed"])
    frame = codec.encode(ack)[0]
    assert _fields(codec.decode_view(memoryview(frame), Ack), ACK) == _fields(ack, ACK)


def test_other_types_damaged_frames_and_failed_cross_checks_give_none():
    good = _frame([1, 2, 1, [0], [1], ["a"], "", 0, [1], [0], 5, [], False, [], []])
    assert codec.decode_view(good, Deliver) is not None
    assert codec.decode_view(codec.encode(AckConfirm(pairs=[], parcels=[]))[0], Deliver) is None
    damaged = bytearray(good)
    damaged[-3] ^= 0xFF
    assert codec.decode_view(bytes(damaged), Deliver) is None  # CRC mismatch (or a type error first)
    wrong_crc = struct.pack("<I", 0) + good[4:]
    assert codec.decode_view(wrong_crc, Deliver) is None
    out_of_range = _frame([1, 2, 1, [5], [1], ["a"], "", 0, [1], [0], 5, [], False, [], []])  # live index past ids
    assert codec.decode_view(out_of_range, Deliver) is None and _decoded(out_of_range) is None
    assert codec.decode_view(_frame([1, 2, 1, [0], [1], ["a"], "", 0, [1], [0], 5, [], False, [], []], version=3),
                             Deliver) is None
    assert codec.decode_view(b"\x00\x01", Deliver) is None


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(segment=st.integers(-1, 2), count=st.integers(-1, 4), live=small_ints, attempts=small_ints, ids=ids,
       id_prefix=st.sampled_from(["", "p-", "p", "p%-", "\u00e9-", "a\x00-", "x" * 497 + "-"]),
       id_first=st.sampled_from([0, 5, 2**63 - 3, 2**63 - 1, 2**63, 2**64 - 1, -1]), sizes=small_ints,
       nframes=small_ints, crc=st.sampled_from([0, 2**32 - 1, 2**32, -1]), packed=st.sampled_from([True, False, 1]),
       confirmed=small_ints)
def test_view_and_decode_agree_on_near_valid_delivers(segment, count, live, attempts, ids, id_prefix, id_first, sizes,
                                                      nframes, crc, packed, confirmed):
    frame = _frame([segment, 0, count, live, attempts, ids, id_prefix, id_first, sizes, nframes, crc, [], packed,
                    confirmed, []])
    view, msg = codec.decode_view(frame, Deliver), _decoded(frame)
    assert (view is None) == (msg is None)
    if msg is not None:
        assert _fields(view, DELIVER) == _fields(msg, DELIVER)
