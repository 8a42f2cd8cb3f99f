"""Codec: round trips of every schema and wire dtype, and rejection of malformed input of many kinds."""

import struct
import zlib

import msgpack
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rollspec.transport.codec import decode, decode_body, encode, encode_body
from rollspec.transport.config import CodecLimits
from rollspec.transport.errors import MessageRejected, RejectReason, SchemaError
from rollspec.transport.fields import limit
from rollspec.transport.registry import SchemaRegistry, register_schema
from rollspec.transport.schemas import PromptItem, Trajectory, WeightChunk

ENGINE_DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.int64, torch.int32, torch.bool, torch.uint8]
LOCAL = SchemaRegistry()


@register_schema("test.holder", 1, registry=LOCAL)
class Holder:
    name: str = limit(max_len=16)
    tensor: torch.Tensor
    extras: dict[str, torch.Tensor]
    note: bytes | None = None


@register_schema("test.holder", 2, registry=LOCAL)
class HolderV2:
    name: str


def _frames_of(body_obj, *frames, crc_ok=True) -> list:
    body = msgpack.packb(body_obj)
    crc = zlib.crc32(body) ^ (0 if crc_ok else 1)
    return [struct.pack("<I", crc) + body, *frames]


def _tensor_ext(index: int, dtype_code: int, shape: tuple) -> msgpack.ExtType:
    return msgpack.ExtType(1, struct.pack("<IBB", index, dtype_code, len(shape)) + b"".join(
        struct.pack("<q", d) for d in shape))


def _random_tensor(dtype: torch.dtype, shape: tuple, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    if dtype.is_floating_point:
        return torch.randn(shape, generator=gen).to(dtype)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=gen).bool()
    return torch.randint(0, 200, shape, generator=gen).to(dtype)


def _roundtrip(msg):
    return decode([bytes(f) for f in encode(msg)], registry=LOCAL)


shapes = st.lists(st.integers(0, 6), min_size=0, max_size=4).map(tuple)


@settings(max_examples=60, deadline=None)
@given(dtype=st.sampled_from(ENGINE_DTYPES), shape=shapes, seed=st.integers(0, 2**31))
def test_tensor_round_trip_every_engine_dtype(dtype, shape, seed):
    tensor = _random_tensor(dtype, shape, seed)
    out = _roundtrip(Holder(name="t", tensor=tensor, extras={"a": tensor[..., :1] if shape else tensor}))
    assert out.tensor.dtype == dtype and out.tensor.shape == tensor.shape
    assert torch.equal(out.tensor, tensor)
    assert torch.equal(out.extras["a"], tensor[..., :1] if shape else tensor)


@pytest.mark.parametrize("dtype", ENGINE_DTYPES)
def test_large_and_non_contiguous_tensors_round_trip(dtype):
    big = _random_tensor(dtype, (1024, 1030), seed=1)
    strided = big[:, ::3]  # non-contiguous: the codec sends a contiguous copy
    out = _roundtrip(Holder(name="big", tensor=big, extras={"strided": strided}))
    assert torch.equal(out.tensor, big) and torch.equal(out.extras["strided"], strided)


def test_tensors_travel_as_separate_frames_without_copy():
    tensor = torch.arange(1000, dtype=torch.float32)
    frames = encode(Holder(name="x", tensor=tensor, extras={}))
    assert len(frames) == 2 and frames[1].nbytes == 4000
    assert torch.frombuffer(frames[1], dtype=torch.float32).data_ptr() == tensor.data_ptr()
    received = bytearray(frames[1])  # a writable buffer, like a received zmq frame
    out = decode([frames[0], received], registry=LOCAL)
    assert out.tensor.data_ptr() == torch.frombuffer(received, dtype=torch.uint8).data_ptr()


token_lists = st.lists(st.integers(0, 2**31), max_size=50)


@settings(max_examples=60, deadline=None)
@given(pid=st.text(min_size=0, max_size=40), tokens=token_lists, version=st.integers(0, 2**40),
       sample=st.integers(0, 64))
def test_prompt_round_trip(pid, tokens, version, sample):
    msg = PromptItem(prompt_id=pid, group_id=pid[:3], sample_index=sample, token_ids=tokens, policy_version=version)
    assert decode(encode(msg)) == msg


@settings(max_examples=60, deadline=None)
@given(tokens=token_lists, as_tensor=st.booleans(), accepted=st.lists(st.integers(0, 5), max_size=8),
       reason=st.sampled_from(["stop", "length", "abort"]))
def test_trajectory_round_trip(tokens, as_tensor, accepted, reason):
    logprobs = [-0.25 * i for i in range(len(tokens))]
    msg = Trajectory(prompt_id="p", group_id="g", sample_index=0, prompt_token_ids=[1, 2], token_ids=tokens,
                     logprobs=torch.tensor(logprobs, dtype=torch.float32) if as_tensor else logprobs,
                     policy_version=3, draft_version=2, accepted_per_position=accepted,
                     proposed_per_position=[a + 1 for a in accepted], finish_reason=reason)
    out = decode(encode(msg))
    assert out.token_ids == tokens and out.finish_reason == reason and out.accepted_per_position == accepted
    got = out.logprobs.tolist() if as_tensor else out.logprobs
    assert got == pytest.approx(logprobs)


@pytest.mark.parametrize("bad", [
    dict(sample_index=-1), dict(sample_index=True), dict(token_ids=[1, -3]), dict(token_ids=[1, "2"]),
    dict(prompt_id="x" * 300), dict(policy_version=1.5), dict(token_ids="123"),
])
def test_invalid_fields_raise_schema_error_naming_the_value(bad):
    fields = dict(prompt_id="p", group_id="g", sample_index=0, token_ids=[1], policy_version=0) | bad
    with pytest.raises(SchemaError) as info:
        PromptItem(**fields)
    assert next(iter(bad)) in str(info.value)


def test_trajectory_cross_field_checks():
    base = dict(prompt_id="p", group_id="g", sample_index=0, prompt_token_ids=[1], token_ids=[5, 6],
                logprobs=[-1.0, -2.0], policy_version=0, draft_version=0, accepted_per_position=[2],
                proposed_per_position=[3], finish_reason="stop")
    Trajectory(**base)
    for bad in [dict(logprobs=[-1.0]), dict(accepted_per_position=[4]), dict(proposed_per_position=[3, 3]),
                dict(logprobs=torch.zeros(2, 1)), dict(logprobs=torch.zeros(2, dtype=torch.float16)),
                dict(finish_reason="done")]:
        with pytest.raises(SchemaError):
            Trajectory(**(base | bad))


def _rejected(frames, reason=None, registry=LOCAL, limits=CodecLimits()):
    with pytest.raises(MessageRejected) as info:
        decode(frames, registry=registry, limits=limits)
    if reason is not None:
        assert info.value.reason == reason, info.value
    return info.value


GOOD_TENSOR = torch.arange(6, dtype=torch.int32).numpy().tobytes()


@pytest.mark.parametrize("frames,reason", [
    ([], RejectReason.MALFORMED),
    ([b"\x01\x02"], RejectReason.MALFORMED),
    (_frames_of(["test.holder", 1, ["x"]], crc_ok=False), RejectReason.CHECKSUM),
    (_frames_of(["nope", 1, []]), RejectReason.UNKNOWN_TYPE),
    (_frames_of(["test.holder", 9, ["x"]]), RejectReason.WRONG_VERSION),
    (_frames_of(["test.holder", "1", ["x"]]), RejectReason.MALFORMED),
    (_frames_of({"tag": "test.holder"}), RejectReason.MALFORMED),
    (_frames_of(["test.holder", 1]), RejectReason.MALFORMED),
    (_frames_of(["test.holder", 2, ["x", "extra"]]), RejectReason.INVALID_FIELD),
    (_frames_of(["test.holder", 2, [7]]), RejectReason.INVALID_FIELD),
    (_frames_of(["test.holder", 2, ["x" * 70000]]), RejectReason.INVALID_FIELD),
    (_frames_of(["test.holder", 1, ["x", _tensor_ext(0, 5, (6,)), {}, None]]), RejectReason.MALFORMED),
    (_frames_of(["test.holder", 1, ["x", _tensor_ext(0, 5, (7,)), {}, None]], GOOD_TENSOR), RejectReason.MALFORMED),
    (_frames_of(["test.holder", 1, ["x", _tensor_ext(0, 99, (6,)), {}, None]], GOOD_TENSOR), RejectReason.MALFORMED),
    (_frames_of(["test.holder", 1, ["x", _tensor_ext(0, 5, (-6,)), {}, None]], GOOD_TENSOR), RejectReason.MALFORMED),
    (_frames_of(["test.holder", 1, ["x", _tensor_ext(0, 5, (6,)), {}, None]], GOOD_TENSOR, b"x"),
     RejectReason.MALFORMED),
    (_frames_of(["test.holder", 1, ["x", _tensor_ext(0, 5, (6,)), {"a": _tensor_ext(0, 5, (6,))}, None]],
                GOOD_TENSOR), RejectReason.MALFORMED),
    (_frames_of(["test.holder", 1, ["x", msgpack.ExtType(7, b"zz"), {}, None]]), RejectReason.MALFORMED),
    (_frames_of(["test.holder", 1, ["x", _tensor_ext(0, 5, (6,)), {1: 2}, None]], GOOD_TENSOR),
     RejectReason.MALFORMED),
    (_frames_of(["test.holder", 1, ["x", _tensor_ext(0, 5, (6,)), {}, 5]], GOOD_TENSOR), RejectReason.INVALID_FIELD),
])
def test_malformed_messages_are_rejected_with_a_reason(frames, reason):
    _rejected(frames, reason)


def test_deeply_nested_and_trailing_garbage_are_malformed():
    nested = b"\x91" * 100_000 + b"\xc0"  # 100k nested one-element arrays
    _rejected([struct.pack("<I", zlib.crc32(nested)) + nested], RejectReason.MALFORMED)
    body = msgpack.packb(["test.holder", 2, ["x"]]) + b"\x00"
    _rejected([struct.pack("<I", zlib.crc32(body)) + body], RejectReason.MALFORMED)


def test_size_caps_reject_oversized_messages():
    tiny = CodecLimits(max_header_bytes=64, max_frame_bytes=1000, max_frames=2, max_message_bytes=3000)
    _rejected(_frames_of(["test.holder", 2, ["x" * 100]]), RejectReason.OVERSIZED, limits=tiny)
    ok_header = _frames_of(["test.holder", 1, ["x", _tensor_ext(0, 7, (2000,)), {}, None]])[0]
    _rejected([ok_header, bytes(2000)], RejectReason.OVERSIZED, limits=tiny)
    _rejected([ok_header, b"", b"", b""], RejectReason.OVERSIZED, limits=tiny)
    huge = _frames_of(["test.holder", 1, ["x", _tensor_ext(0, 1, (1 << 40,)), {}, None]], b"")
    _rejected(huge, RejectReason.OVERSIZED)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=200), extra=st.lists(st.binary(max_size=40), max_size=3))
def test_random_bytes_never_escape_as_anything_but_rejection(data, extra):
    for header in (data, struct.pack("<I", zlib.crc32(data)) + data):
        try:
            decode([header, *extra], registry=LOCAL)
        except MessageRejected:
            pass


@settings(max_examples=200, deadline=None)
@given(position=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_any_single_bit_flip_in_a_header_is_caught(position, bit):
    frames = encode(PromptItem(prompt_id="p", group_id="g", sample_index=1, token_ids=[5] * 20, policy_version=2))
    header = bytearray(frames[0])
    header[position % len(header)] ^= 1 << bit
    _rejected([bytes(header)], registry=LOCAL)


def test_encode_refuses_non_schema_values_and_gpu_like_misuse():
    with pytest.raises(SchemaError):
        encode({"not": "a schema"})
    with pytest.raises(SchemaError):
        Holder(name="x", tensor=torch.zeros(2, dtype=torch.complex64), extras={})
    with pytest.raises(SchemaError):
        Holder(name="x", tensor=[1, 2], extras={})


def test_items_without_checksum_prefix_decode_from_body_and_frames():
    chunk = WeightChunk(version=3, index=1, crc=7, data=torch.arange(10, dtype=torch.uint8))
    body, frames = encode_body(chunk)
    out = decode_body(body, [bytes(f) for f in frames])
    assert out.version == 3 and torch.equal(out.data, chunk.data)


def test_register_schema_rejects_bad_declarations():
    with pytest.raises(TypeError):
        @register_schema("test.bad", 1, registry=SchemaRegistry())
        class Bad:
            value: set[int]
    with pytest.raises(SchemaError):
        register_schema("", 1)
    with pytest.raises(ValueError):
        registry = SchemaRegistry()
        register_schema("dup", 1, registry=registry)(type("A", (), {"__annotations__": {"x": int}}))
        register_schema("dup", 1, registry=registry)(type("B", (), {"__annotations__": {"x": int}}))


def _split_ext(index: int, count: int, dtype_code: int, shape: tuple) -> msgpack.ExtType:
    return msgpack.ExtType(2, struct.pack("<IIBB", index, count, dtype_code, len(shape)) + b"".join(
        struct.pack("<q", d) for d in shape))


@settings(max_examples=40, deadline=None)
@given(dtype=st.sampled_from(ENGINE_DTYPES), shape=st.lists(st.integers(0, 40), min_size=1, max_size=2).map(tuple),
       frame_bytes=st.integers(8, 300), seed=st.integers(0, 2**31))
def test_tensors_above_frame_bytes_travel_split_and_round_trip(dtype, shape, frame_bytes, seed):
    tensor = _random_tensor(dtype, shape, seed)
    small = torch.arange(3, dtype=torch.int64)
    body, frames = encode_body(Holder(name="s", tensor=tensor, extras={"b": small}), frame_bytes=frame_bytes)
    def pieces(nbytes: int) -> int:
        return -(-nbytes // frame_bytes) if nbytes > frame_bytes else 1

    assert len(frames) == pieces(tensor.numel() * tensor.element_size()) + pieces(24)
    assert all(f.nbytes <= frame_bytes for f in frames if f.nbytes) or max(f.nbytes for f in frames) == 0
    out = decode_body(body, [bytearray(f) for f in frames], registry=LOCAL)
    assert out.tensor.dtype == dtype and out.tensor.shape == tensor.shape and torch.equal(out.tensor, tensor)
    assert torch.equal(out.extras["b"], small)


SPLIT = [GOOD_TENSOR[:8], GOOD_TENSOR[8:16], GOOD_TENSOR[16:]]


def test_split_tensor_decodes_from_its_frames():
    out = decode(_frames_of(["test.holder", 1, ["x", _split_ext(0, 3, 5, (6,)), {}, None]], *SPLIT), registry=LOCAL)
    assert out.tensor.tolist() == list(range(6))


@pytest.mark.parametrize("frames", [
    _frames_of(["test.holder", 1, ["x", _split_ext(0, 1, 5, (6,)), {}, None]], GOOD_TENSOR),  # a split of one
    _frames_of(["test.holder", 1, ["x", _split_ext(0, 3, 5, (6,)), {}, None]], *SPLIT[:2]),  # frames missing
    _frames_of(["test.holder", 1, ["x", _split_ext(0, 2, 5, (6,)), {}, None]], *SPLIT),  # a frame left over
    _frames_of(["test.holder", 1, ["x", _split_ext(0, 3, 5, (7,)), {}, None]], *SPLIT),  # sizes disagree
    _frames_of(["test.holder", 1, ["x", _split_ext(0, 4, 5, (6,)), {}, None]], *SPLIT, b""),  # an empty piece
    _frames_of(["test.holder", 1, ["x", _split_ext(0, 3, 99, (6,)), {}, None]], *SPLIT),  # unknown dtype
    _frames_of(["test.holder", 1, ["x", _split_ext(0, 3, 5, (6,)), {"a": _tensor_ext(1, 5, (2,))}, None]],
               *SPLIT),  # a piece referenced twice
    _frames_of(["test.holder", 1, ["x", msgpack.ExtType(2, b"\x00" * 5), {}, None]], *SPLIT),  # short descriptor
    _frames_of(["test.holder", 1, ["x", _split_ext(2**32 - 1, 3, 5, (6,)), {}, None]], *SPLIT),  # index overflow
])
def test_malformed_split_tensors_are_rejected(frames):
    _rejected(frames, RejectReason.MALFORMED)


def test_split_tensor_size_caps_apply_to_the_whole_tensor():
    tiny = CodecLimits(max_frame_bytes=16, max_frames=8)
    _rejected(_frames_of(["test.holder", 1, ["x", _split_ext(0, 3, 5, (6,)), {}, None]], *SPLIT),
              RejectReason.OVERSIZED, limits=tiny)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(position=st.integers(4, 200), value=st.integers(0, 255), cut=st.integers(0, 12), drop=st.booleans())
def test_mutated_split_tensor_messages_decode_or_are_rejected(position, value, cut, drop):
    tensor = torch.arange(40, dtype=torch.int32)
    body, frames = encode_body(Holder(name="m", tensor=tensor, extras={"b": tensor[:5].clone()}), frame_bytes=48)
    mutated = bytearray(body)
    mutated[position % len(mutated)] = value
    pieces = [bytearray(f) for f in frames]
    pieces[1] = pieces[1][:len(pieces[1]) - cut]
    if drop:
        del pieces[2]
    try:
        out = decode_body(bytes(mutated), pieces, registry=LOCAL)
    except MessageRejected:
        return
    assert isinstance(out, Holder)
