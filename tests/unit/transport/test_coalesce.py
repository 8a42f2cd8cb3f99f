"""segments.coalesce_packed: several local packed segments become one packed body that decodes to the same
items in order, passes the receiver's checks, and stays within the caps; anything else is left alone."""

from rollspec.transport import codec, segments
from rollspec.transport.channel import IdSource
from rollspec.transport.protocol import Heartbeat
from rollspec.transport.schemas import PromptItem


def _items(start: int, n: int) -> list[PromptItem]:
    return [PromptItem(prompt_id=f"p{i}", group_id=f"g{i % 3}", sample_index=i, token_ids=list(range(i % 50)),
                       policy_version=1) for i in range(start, start + n)]


def _segment(items) -> segments.WirePayload:
    return segments.encode(items, IdSource().take(len(items)), checksum_tensors=False)


def test_merged_body_decodes_to_every_item_in_order_and_passes_the_receivers_checks():
    parts = [_items(0, 3), _items(3, 20), _items(23, 1)]  # row counts below and above 16 (array header forms)
    merged, count = segments.coalesce_packed([_segment(p) for p in parts], max_items=256, max_bytes=1 << 20)
    assert count == 3 and merged.packed and merged.local
    received = segments.receive(merged.blob, [], blob_crc=merged.blob_crc, sizes=merged.sizes,
                                nframes=merged.nframes, live=list(range(24)), frame_crcs=[], packed=True)
    assert codec.decode_rows(received.blob, 24) == [item for p in parts for item in p]


def test_merging_stops_at_the_caps_and_at_another_schema():
    small = [_segment(_items(10 * k, 10)) for k in range(4)]
    merged, count = segments.coalesce_packed(small, max_items=25, max_bytes=1 << 20)
    assert count == 2 and len(merged.sizes) == 20
    assert segments.coalesce_packed(small, max_items=256, max_bytes=len(small[0].blob) + 10) is None
    other = segments.encode([Heartbeat(queue="q", role="producer", window_items=1, window_bytes=1, held=[],
                                       acked=[], parcels=[])] * 2, ["h1", "h2"], checksum_tensors=False)
    merged, count = segments.coalesce_packed([small[0], small[1], other, small[2]], max_items=256, max_bytes=1 << 20)
    assert count == 2 and codec.decode_rows(merged.blob, 20) == _items(0, 20)


def test_payloads_received_from_a_peer_or_not_packed_are_never_merged():
    local = _segment(_items(0, 5))
    peer = segments.receive(local.blob, [], blob_crc=local.blob_crc, sizes=local.sizes, nframes=local.nframes,
                            live=list(range(5)), frame_crcs=[], packed=True)
    assert segments.coalesce_packed([peer, local], max_items=256, max_bytes=1 << 20) is None
    assert segments.coalesce_packed([local, peer], max_items=256, max_bytes=1 << 20) is None
    mixed = segments.encode([*_items(0, 1), Heartbeat(queue="q", role="producer", window_items=1, window_bytes=1,
                                                      held=[], acked=[], parcels=[])], ["x", "y"], False)
    assert not mixed.packed and segments.coalesce_packed([mixed, local], max_items=256, max_bytes=1 << 20) is None
