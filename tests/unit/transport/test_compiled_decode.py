"""The compiled (msgspec) decode path accepts exactly what the Python checkers accept, builds equal
messages, and leaves every rejection (and its reason) to the Python path."""

import struct
import zlib

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rollspec.transport import codec
from rollspec.transport.errors import MessageRejected
from rollspec.transport.protocol import Ack, AckConfirm, Deliver, Detach, Heartbeat, PutAck, PutBatch
from rollspec.transport.schemas import ChunkRequest, PromptItem, SignedManifest, WeightManifest, WeightQuery

TENSOR_FREE = [Ack, AckConfirm, Deliver, Detach, Heartbeat, PutAck, PutBatch, ChunkRequest, PromptItem,
               SignedManifest, WeightManifest, WeightQuery]

# Values of every msgpack kind, including ones just past the schemas' caps and bounds.
leaf = st.one_of(st.none(), st.booleans(), st.integers(-2, 2**64 - 1), st.floats(allow_nan=True),
                 st.text(max_size=3), st.binary(max_size=3), st.just("x" * 257), st.just("producer"),
                 st.just("consumer"), st.integers(2**32 - 2, 2**32 + 1))
value = st.recursive(leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=2), inner,
                                                                                         max_size=2), max_leaves=8)


def _python_path(body: bytes):
    saved = codec._decode_compiled
    codec._decode_compiled = lambda body, registry: None
    try:
        return codec.decode_body(body, ())
    finally:
        codec._decode_compiled = saved


def _outcome(decode, body: bytes):
    try:
        return ("ok", decode(body))
    except MessageRejected as exc:
        return ("rejected", exc.reason, exc.detail)


@pytest.mark.parametrize("cls", TENSOR_FREE, ids=lambda c: c.__name__)
def test_every_tensor_free_schema_compiles(cls):
    assert codec._compile(cls) is not None


def _assert_same(body: bytes) -> None:
    fast, slow = _outcome(lambda b: codec.decode_body(b, ()), body), _outcome(_python_path, body)
    assert fast == slow


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cls=st.sampled_from(TENSOR_FREE), data=st.data())
def test_compiled_and_python_paths_agree_on_arbitrary_field_values(cls, data):
    info = cls.__schema__
    values = data.draw(st.lists(value, min_size=len(info.names), max_size=len(info.names)))
    _assert_same(msgpack.packb([info.tag, info.version, values]))


@settings(max_examples=200, deadline=None)
@given(tokens=st.lists(st.integers(-1, 2**40), max_size=20), pid=st.text(max_size=300),
       version=st.one_of(st.integers(-1, 2**63), st.floats(), st.booleans()), sample=st.integers(-1, 3))
def test_compiled_and_python_paths_agree_on_near_valid_prompts(tokens, pid, version, sample):
    _assert_same(msgpack.packb(["prompt", 1, [pid, pid[:3], sample, tokens, version]]))


def test_compiled_path_builds_the_same_message_and_runs_cross_field_checks():
    msg = Heartbeat(queue="q", role="consumer", window_items=3, window_bytes=9, held=[1, 2], acked=[], parcels=[])
    body, _ = codec.encode_body(msg)
    assert codec._decode_compiled(body, codec.DEFAULT_REGISTRY) == msg
    odd = msgpack.packb(["rs.heartbeat", 2, ["q", "consumer", 3, 9, [1], [], []]])  # held pairs: odd length
    assert codec._decode_compiled(odd, codec.DEFAULT_REGISTRY) is None
    with pytest.raises(MessageRejected, match="even number"):
        codec.decode_body(odd, ())


def test_whole_frames_through_the_compiled_path_keep_crc_and_trailing_garbage_checks():
    body = msgpack.packb(["rs.detach", 1, ["q", "producer"]])
    assert codec.decode([struct.pack("<I", zlib.crc32(body)) + body]) == Detach(queue="q", role="producer")
    for bad in (body + b"\x00", body[:-1]):
        with pytest.raises(MessageRejected):
            codec.decode([struct.pack("<I", zlib.crc32(bad)) + bad])


def test_batch_decode_matches_one_by_one_and_marks_what_needs_the_python_path():
    from rollspec.transport.config import CodecLimits

    prompt = PromptItem(prompt_id="p", group_id="g", sample_index=0, token_ids=[1, 2], policy_version=1)
    good, other = codec.encode_body(prompt)[0], codec.encode_body(Detach(queue="q", role="consumer"))[0]
    bad = msgpack.packb(["prompt", 1, ["p", "g", -1, [1], 1]])  # sample_index < 0
    huge = msgpack.packb(["prompt", 1, ["p" * 200, "g", 0, [1], 1]])
    bodies = [good, bad, other, good, b"", huge, good]
    out = codec.decode_bodies_compiled(bodies, limits=CodecLimits(max_header_bytes=100))
    assert out == [prompt, None, Detach(queue="q", role="consumer"), prompt, None, None, prompt]


def test_trusted_encoding_of_hot_protocol_headers_decodes_to_the_checked_message():
    from rollspec.transport.protocol import Deliver, PutBatch

    deliver = dict(segment=3, parcel=9, count=3, live=[0, 2], attempts=[1, 2], ids=["a", "b", "c"], id_prefix="",
                   id_first=0, sizes=[], nframes=[], blob_crc=7, frame_crcs=[], packed=True, confirmed=[3, 1],
                   confirmed_parcels=[8])
    assert codec.decode(codec.encode_trusted(Deliver, **deliver)) == Deliver(**deliver)
    put = dict(queue="q", window=8, seqs=[4, 5], ids=["a", "b"], id_prefix="", id_first=0, sizes=[1, 2], nframes=[0, 1],
               blob_crc=1, frame_crcs=[5], packed=False)
    assert codec.decode(codec.encode_trusted(PutBatch, **put)) == PutBatch(**put)
    compact = put | dict(ids=[], id_prefix="p-", id_first=9, sizes=[], nframes=[], frame_crcs=[], packed=True)
    assert codec.decode(codec.encode_trusted(PutBatch, **compact)) == PutBatch(**compact)
    for bad in (dict(ids=["a", "b"]), dict(sizes=[1, 2]), dict(id_prefix="p"), dict(id_first=2**63 - 1)):
        with pytest.raises(MessageRejected):  # ids both ways, sizes of a packed segment, an odd prefix, past 2**63
            codec.decode(codec.encode_trusted(PutBatch, **(compact | bad)))
    with pytest.raises(MessageRejected):  # the receiver still checks: a bad value is refused there
        codec.decode(codec.encode_trusted(Deliver, **(deliver | {"live": [0, 5]})))


def test_packed_rows_of_alternating_classes_and_a_bad_row_after_a_good_body():
    """decode_rows tries the last packed class first (one pass): another class, or a row the checks
    refuse, must still come out exactly as the two-pass path makes it."""
    prompts = [PromptItem(prompt_id=f"p{i}", group_id="g", sample_index=i, token_ids=[1, i], policy_version=0)
               for i in range(3)]
    queries = [WeightQuery(has_version=True, version=i) for i in range(2)]
    for items in (prompts, queries, prompts, queries):
        assert codec.decode_rows(codec.encode_rows(items), len(items)) == items
    codec.decode_rows(codec.encode_rows(prompts), 3)
    bad = msgpack.packb(["prompt", 1, [["p", "g", 0, [1], 0], ["p", "g", -1, [1], 0]]])  # sample_index < 0
    out = codec.decode_rows(bad, 2)
    assert out[0] == PromptItem(prompt_id="p", group_id="g", sample_index=0, token_ids=[1], policy_version=0)
    assert type(out[1]) is MessageRejected and "sample_index" in str(out[1])
