"""Rows of a packed segment decode to the same instances, in the same order, with the same rejections,
whether the instances are built by the C extension (native.py) or by the Python builder."""

import dataclasses
import gc

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rollspec.transport import codec, native
from rollspec.transport.channel import IdSource
from rollspec.transport.errors import MessageRejected, RejectReason, SchemaError
from rollspec.transport.fields import limit
from rollspec.transport.registry import SchemaRegistry, register_schema

PATHS = ["native", "python"]


def _schemas(monkeypatch, path: str) -> tuple[SchemaRegistry, type, type]:
    """Fresh classes in a fresh registry, compiled under `path` (the codec caches builders per class)."""
    monkeypatch.setenv("ROLLSPEC_TRANSPORT_NATIVE", "1" if path == "native" else "0")
    registry = SchemaRegistry()

    @register_schema("t.item", 1, registry=registry)
    class Item:
        seq: int = limit(ge=0)
        payload: bytes = limit(max_len=8)
        name: str = limit(max_len=4)
        tags: list[int] = limit(max_len=3, ge=0)

    @register_schema("t.checked", 1, registry=registry)
    class Checked:
        lo: int
        hi: int

        def check(self) -> None:
            if self.lo > self.hi:
                raise SchemaError("Checked.lo", self.lo, f"<= hi ({self.hi})")

    for cls in (Item, Checked):
        build_rows = codec._compile(cls)[2][1]
        assert (type(getattr(build_rows, "__self__", None)).__name__ == "RowBuilder") == (path == "native")
    return registry, Item, Checked


def _outcomes(items: list) -> list:
    """Comparable across the two paths' (distinct) classes: (class name, field values) or the rejection."""
    return [("rejected", x.reason, x.detail) if type(x) is MessageRejected
            else (type(x).__name__, dataclasses.astuple(x)) for x in items]


def _decode_both(monkeypatch, blob: bytes, count: int) -> tuple[list, list]:
    native = codec.decode_rows(blob, count, registry=_schemas(monkeypatch, "native")[0])
    python = codec.decode_rows(blob, count, registry=_schemas(monkeypatch, "python")[0])
    return native, python


@pytest.fixture(autouse=True)
def _needs_extension():
    if not native.enabled():
        pytest.skip("no C compiler: the transport's C extension cannot be built")


@pytest.mark.parametrize("path", PATHS)
def test_rows_come_back_as_equal_instances_in_order(monkeypatch, path):
    registry, item_cls, _ = _schemas(monkeypatch, path)
    items = [item_cls(seq=i, payload=bytes([i % 256]) * (i % 9), name="ab"[: i % 3], tags=[i, 0][: i % 3])
             for i in range(300)]
    out = codec.decode_rows(codec.encode_rows(items), len(items), registry=registry)
    assert out == items
    assert all(type(x) is item_cls for x in out)
    with pytest.raises(dataclasses.FrozenInstanceError):
        out[0].seq = 5


@pytest.mark.parametrize("path", PATHS)
def test_rows_outside_caps_are_rejected_one_by_one(monkeypatch, path):
    registry, item_cls, _ = _schemas(monkeypatch, path)
    rows = [[1, b"ok", "a", []], [-1, b"ok", "a", []], [2, b"x" * 9, "a", []], [3, b"", "abcde", []],
            [4, b"", "", [1, 2, 3, 4]], [5, b"", "", [-2]], [6, "not bytes", "", []], [7, b"", ""], [8, b"z", "z", [8]]]
    out = codec.decode_rows(msgpack.packb(["t.item", 1, rows]), len(rows), registry=registry)
    assert out[0] == item_cls(seq=1, payload=b"ok", name="a", tags=[])
    assert out[-1] == item_cls(seq=8, payload=b"z", name="z", tags=[8])
    assert [type(x) is MessageRejected and x.reason for x in out[1:-1]] == [RejectReason.INVALID_FIELD] * 7


@pytest.mark.parametrize("path", PATHS)
def test_a_failing_check_rejects_only_its_row(monkeypatch, path):
    registry, _, checked_cls = _schemas(monkeypatch, path)
    out = codec.decode_rows(msgpack.packb(["t.checked", 1, [[1, 2], [3, 1], [2, 2]]]), 3, registry=registry)
    assert out[0] == checked_cls(lo=1, hi=2) and out[2] == checked_cls(lo=2, hi=2)
    assert type(out[1]) is MessageRejected and "<= hi (1)" in out[1].detail


@pytest.mark.parametrize("path", PATHS)
def test_malformed_bodies_reject_every_row(monkeypatch, path):
    registry, item_cls, _ = _schemas(monkeypatch, path)
    body = codec.encode_rows([item_cls(seq=1, payload=b"", name="", tags=[])] * 4)
    cases = ((body[:-3], 4), (body, 3), (body + b"\x00", 4), (b"\x93", 4), (msgpack.packb(["t.item", 2, []]), 0))
    for blob, count in cases:
        out = codec.decode_rows(blob, count, registry=registry)
        assert len(out) == count and all(type(x) is MessageRejected for x in out)


_ANY = st.one_of(st.integers(-2, 2**64 - 1), st.binary(max_size=10), st.text(max_size=6),
                st.lists(st.integers(-1, 3), max_size=4), st.none())
_VALID_ROW = st.tuples(st.integers(0, 2**64 - 1), st.binary(max_size=8), st.text(max_size=4),
                       st.lists(st.integers(0, 3), max_size=3)).map(list)
_NEAR_VALID_ROW = st.tuples(st.integers(-1, 2**64 - 1), st.binary(max_size=9), st.text(max_size=5),
                            st.lists(st.integers(-1, 3), max_size=4)).map(list)
_ROWS = st.lists(_VALID_ROW, max_size=6) | st.lists(_VALID_ROW | _NEAR_VALID_ROW | st.lists(_ANY, max_size=5),
                                                    max_size=6)


_BODIES = _ROWS.flatmap(lambda rows: st.tuples(st.just(msgpack.packb(["t.item", 1, rows])),
                                               st.just(len(rows)) | st.integers(0, 6)))


def test_paths_agree_on_random_bytes_and_near_valid_rows(monkeypatch):
    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(case=_BODIES | st.tuples(st.binary(max_size=64), st.integers(0, 6)), cut=st.just(0) | st.integers(0, 3))
    def check(case, cut):
        blob, count = case
        blob = blob[:len(blob) - cut]  # a short body: its last rows end early
        native, python = _decode_both(monkeypatch, blob, count)
        assert _outcomes(native) == _outcomes(python)

    check()


def test_rows_of_plain_values_are_left_to_reference_counting(monkeypatch):
    """An instance whose values cannot be part of a reference cycle is not tracked by the cyclic garbage
    collector (a consumer holds each one until it is acked); one holding a container still is."""
    registry, item_cls, checked_cls = _schemas(monkeypatch, "native")
    plain = codec.decode_rows(codec.encode_rows([checked_cls(lo=1, hi=2)] * 3), 3, registry=registry)
    holding = codec.decode_rows(codec.encode_rows([item_cls(seq=1, payload=b"", name="", tags=[])] * 2), 2,
                                registry=registry)
    assert plain == [checked_cls(lo=1, hi=2)] * 3 and not any(map(gc.is_tracked, plain))
    assert all(map(gc.is_tracked, holding))


def test_instances_with_a_dict_stay_tracked():
    """What an instance __dict__ may hold later is unknown when the instance is built."""
    module = native.module()

    class Slotted:
        __slots__ = ("a",)

    class WithDict:
        __slots__ = ("a", "__dict__")

    untracked, = module.RowBuilder(Slotted, ("a",), False).many([(1,)])
    tracked, = module.RowBuilder(WithDict, ("a",), False).many([(1,)])
    assert not gc.is_tracked(untracked) and gc.is_tracked(tracked)
    tracked.cycle = tracked
    del tracked
    assert gc.collect() >= 1  # the self-referencing instance is found and freed


def test_the_builder_refuses_what_it_cannot_build_safely():
    module = native.module()

    class Plain:
        __slots__ = ("a",)

    class Custom:
        __slots__ = ("a",)

        def __new__(cls):
            return super().__new__(cls)

    class NoSlots:
        a = 1

    builder = module.RowBuilder(Plain, ("a",), False)
    assert builder.many([(1,), ("x",)])[1].a == "x"
    for row in [(), (1, 2), [1], None]:
        with pytest.raises(TypeError):
            builder.many([row])
    with pytest.raises(TypeError):
        builder.many(((1,),))
    for cls, names in ((Custom, ("a",)), (NoSlots, ("a",)), (Plain, ("b",)), (Plain, ("__class__",)), (int, ())):
        with pytest.raises(TypeError):
            module.RowBuilder(cls, names, False)


def test_no_compiler_means_the_python_builder_not_a_failure(tmp_path):
    import os
    import subprocess
    import sys

    code = ("from bench.transport import _schemas; from rollspec.transport import codec, native as n;"
            "cls = _schemas()[0]; items = [cls(seq=i, payload=b'x') for i in range(3)];"
            "print(n.enabled(), codec.decode_rows(codec.encode_rows(items), 3) == items)")
    env = dict(os.environ, CC=str(tmp_path / "no-such-compiler"), ROLLSPEC_KERNEL_CACHE=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]


@pytest.mark.parametrize("first, n", [(1, 0), (1, 1), (1, 300), (0, 3), (2**32 - 2, 5), (2**64 - 5, 4)])
def test_ids_made_in_c_equal_the_python_ones(first, n):
    made = native.module().hex_ids("0123456789abcdef-", first, n)
    expected = [f"0123456789abcdef-{k:x}" for k in range(first, first + n)]
    assert made == native._hex_ids("0123456789abcdef-", first, n) == expected
    assert all(type(x) is str for x in made) and len(set(made)) == n


def test_id_sources_never_repeat_and_refuse_bad_arguments():
    source = IdSource()
    ids = source.take(5) + [source.next()] + source.take(1000)
    assert len(set(ids)) == len(ids) == 1006 and ids[5].endswith("-6") and ids[-1].endswith(f"-{1006:x}")
    make = native.module().hex_ids
    for args in (("é-", 1, 2), ("p", -1, 2), ("p", 1, -2), ("p", 2**64 - 1, 2), (b"p", 1, 1), ("p", 1)):
        with pytest.raises((TypeError, ValueError, OverflowError)):
            make(*args)
