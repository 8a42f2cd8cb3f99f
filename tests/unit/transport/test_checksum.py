"""The transport's CRC32 (ISA-L when installed) has zlib's values, and a flipped body byte is refused."""

import os
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rollspec.transport import codec, segments
from rollspec.transport.checksum import crc32
from rollspec.transport.errors import MessageRejected, RejectReason
from rollspec.transport.schemas import PromptItem


@given(st.binary(max_size=5000), st.integers(0, 64))
@settings(max_examples=200, deadline=None)
def test_crc32_has_zlibs_values_on_bytes_and_views(data, skip):
    assert crc32(data) == zlib.crc32(data)
    view = memoryview(data)[min(skip, len(data)):]
    assert crc32(view) == zlib.crc32(view)


def test_crc32_of_a_large_buffer_matches_zlib():
    data = bytearray(os.urandom(3 << 20))
    assert crc32(data) == zlib.crc32(data)


def _packed_segment():
    items = [PromptItem(prompt_id=f"p{i}", group_id="g", sample_index=i, token_ids=list(range(40)), policy_version=0)
             for i in range(8)]
    return segments.encode(items, [f"id{i}" for i in range(8)], checksum_tensors=False)


@pytest.mark.parametrize("where", [0, 1, 17, 333, -2, -1])
def test_a_flipped_body_byte_is_rejected_as_a_checksum_error(where):
    wire = _packed_segment()
    blob = bytearray(wire.blob)
    segments.receive(bytes(blob), [], blob_crc=wire.blob_crc, sizes=wire.sizes, nframes=wire.nframes,
                     live=list(range(8)), frame_crcs=[], packed=True)  # intact: accepted
    blob[where] ^= 0x40
    with pytest.raises(MessageRejected) as info:
        segments.receive(bytes(blob), [], blob_crc=wire.blob_crc, sizes=wire.sizes, nframes=wire.nframes,
                         live=list(range(8)), frame_crcs=[], packed=True)
    assert info.value.reason is RejectReason.CHECKSUM


def test_a_flipped_header_byte_is_rejected_as_a_checksum_error():
    header = bytearray(codec.encode(PromptItem(prompt_id="p", group_id="g", sample_index=0, token_ids=[1, 2],
                                               policy_version=0))[0])
    header[-1] ^= 0x01
    with pytest.raises(MessageRejected) as info:
        codec.decode([bytes(header)])
    assert info.value.reason is RejectReason.CHECKSUM
