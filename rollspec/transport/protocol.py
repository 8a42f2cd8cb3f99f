"""Control messages of the work-queue protocol between producers, the broker and consumers.

Items travel in segments: one `PutBatch` or `Deliver` header followed by a body blob (packed: one
body holding every item's row; else the items' msgpack bodies back to back, `sizes` long each) and
then the items' tensor frames in order (segments.py). A segment's items keep their own ids (dedup is
per item everywhere); leases and acks are per parcel, the items of one segment leased to one consumer
by one Deliver: a consumer acks a parcel whose items it all finished with one number. Items are also
addressable as (segment, index) pairs, flattened into int lists on the wire: partial acks, rejections
and the items a consumer holds.
"""

from typing import Any, Literal, NamedTuple

from rollspec.transport.errors import SchemaError
from rollspec.transport.fields import limit
from rollspec.transport.native import hex_ids
from rollspec.transport.registry import register_schema

U32 = (1 << 32) - 1
I64 = (1 << 63) - 1  # msgspec checks int bounds up to int64
MAX_BATCH = 1 << 16
MAX_ID_LEN = 512


def _check_pairs(where: str, pairs: list[int]) -> None:
    if len(pairs) % 2:
        raise SchemaError(where, f"<{len(pairs)} ints>", "an even number of ints: (segment, index) pairs")


def _check_ids(where: str, ids: list[str]) -> None:
    lengths = set(map(len, ids))  # one C-level scan (every batch of up to 64k ids); min / max over a few lengths
    if lengths and (min(lengths) < 1 or max(lengths) > MAX_ID_LEN):
        bad = next(i for i in ids if not 0 < len(i) <= MAX_ID_LEN)
        raise SchemaError(where, bad, f"a message id of 1..{MAX_ID_LEN} characters")


def _check_same_length(where: str, expected: int, *lists: list[Any]) -> None:
    for values in lists:
        if len(values) != expected:
            raise SchemaError(where, f"<{len(values)} entries>", f"{expected}, one per item")


@register_schema("rs.heartbeat", 2)
class Heartbeat:
    """Endpoint -> broker, every heartbeat_s: keeps the endpoint's leases alive, declares its window and,
    for consumers, lists the (segment, index) pairs it holds and the pairs and parcels it acked without
    confirmation."""

    queue: str = limit(max_len=128)
    role: Literal["producer", "consumer"]
    window_items: int = limit(ge=1)
    window_bytes: int = limit(ge=1)
    held: list[int] = limit(max_len=2 * MAX_BATCH, ge=0)
    acked: list[int] = limit(max_len=2 * MAX_BATCH, ge=0)
    parcels: list[int] = limit(max_len=MAX_BATCH, ge=0)

    def check(self) -> None:
        """Cross-field rules (run after the per-field checks)."""
        _check_pairs("Heartbeat.held", self.held)
        _check_pairs("Heartbeat.acked", self.acked)


@register_schema("rs.put", 3)
class PutBatch:
    """Producer -> broker: one segment of new items (producer sequence numbers `seqs`, consecutive)
    followed by its body blob and frames. Compact forms as in Deliver: `ids` empty with `id_prefix` set (a
    run of generated ids from id_first), `sizes` and `nframes` empty for a packed segment (put_lists)."""

    queue: str = limit(max_len=128)
    window: int = limit(ge=1)
    seqs: list[int] = limit(max_len=MAX_BATCH, ge=1)
    ids: list[str] = limit(max_len=MAX_BATCH)
    id_prefix: str = limit(max_len=MAX_ID_LEN - 16)
    id_first: int = limit(ge=0, le=I64)
    sizes: list[int] = limit(max_len=MAX_BATCH, ge=0)
    nframes: list[int] = limit(max_len=MAX_BATCH, ge=0)
    blob_crc: int = limit(ge=0, le=U32)
    frame_crcs: list[int] = limit(ge=0, le=U32)
    packed: bool

    def check(self) -> None:
        """Cross-field rules (run after the per-field checks)."""
        n = len(self.seqs)
        if not n:
            raise SchemaError("PutBatch.seqs", self.seqs, "at least one item")
        _check_same_length("PutBatch.ids", 0 if self.id_prefix else n, self.ids)
        _check_same_length("PutBatch.sizes", 0 if self.packed else n, self.sizes, self.nframes)
        if self.id_prefix:
            _check_run("PutBatch", self.id_prefix, self.id_first, n)
        else:
            _check_ids("PutBatch.ids", self.ids)


def put_lists(msg: Any, blob_bytes: int) -> tuple[list[str], list[int], list[int]]:
    """(ids, sizes, nframes) of a checked PutBatch, its compact forms expanded (see deliver_lists)."""
    n = len(msg.seqs)
    return (_expanded_ids(msg, n), *_expanded_sizes(msg, blob_bytes, n))


@register_schema("rs.put_ack", 2)
class PutAck:
    """Broker -> producer: the segments starting at these sequence numbers are stored (or were
    duplicates); `granted` is the cumulative credit: the producer may send new items with seq <= granted."""

    seqs: list[int] = limit(max_len=MAX_BATCH, ge=1)
    granted: int = limit(ge=0)


@register_schema("rs.deliver", 4)
class Deliver:
    """Broker -> consumer: parcel `parcel`, the items at `live` of segment `segment` (`count` items), leased to
    this consumer; `attempts` counts deliveries of each live item; the frames that follow belong to the live
    items only (a packed segment has none, and its whole blob travels). `confirmed` and `confirmed_parcels`
    are an AckConfirm carried along (acks this consumer sent since its last delivery): one inbound message
    per delivery instead of two.

    The per-item lists have compact forms, so that the common parcel (a whole packed segment of generated
    ids, first delivery) costs no per-item header: `ids` empty with `id_prefix` set: the ids are id_prefix +
    '%x' % k, k = id_first, id_first + 1, ... (channel.IdSource's run); `live` empty: all `count` items;
    `attempts` of one entry: the same for every live item; `sizes` and `nframes` empty for a packed segment:
    equal shares of its blob, no frames (segments.shares). deliver_lists() expands them."""

    segment: int = limit(ge=0)
    parcel: int = limit(ge=0)
    count: int = limit(ge=1, le=MAX_BATCH)
    live: list[int] = limit(max_len=MAX_BATCH, ge=0)
    attempts: list[int] = limit(max_len=MAX_BATCH, ge=1)
    ids: list[str] = limit(max_len=MAX_BATCH)
    id_prefix: str = limit(max_len=MAX_ID_LEN - 16)
    id_first: int = limit(ge=0, le=I64)
    sizes: list[int] = limit(max_len=MAX_BATCH, ge=0)
    nframes: list[int] = limit(max_len=MAX_BATCH, ge=0)
    blob_crc: int = limit(ge=0, le=U32)
    frame_crcs: list[int] = limit(ge=0, le=U32)
    packed: bool
    confirmed: list[int] = limit(max_len=2 * MAX_BATCH, ge=0)
    confirmed_parcels: list[int] = limit(max_len=MAX_BATCH, ge=0)

    def check(self) -> None:
        """Cross-field rules (run after the per-field checks)."""
        n, live = self.count, len(self.live) or self.count
        # The lengths of a valid header in one test (this runs per delivery); the named checks word a failure.
        if len(self.confirmed) % 2 or len(self.ids) != (0 if self.id_prefix else n) \
                or len(self.attempts) not in (1, live) or len(self.live) > n \
                or len(self.sizes) != (0 if self.packed else n) or len(self.nframes) != len(self.sizes):
            _check_pairs("Deliver.confirmed", self.confirmed)
            if len(self.live) > n:
                raise SchemaError("Deliver.live", f"<{len(self.live)} entries>", f"at most count = {n}")
            _check_same_length("Deliver.attempts", live if len(self.attempts) != 1 else 1, self.attempts)
            _check_same_length("Deliver.ids", 0 if self.id_prefix else n, self.ids)
            _check_same_length("Deliver.sizes", 0 if self.packed else n, self.sizes, self.nframes)
        if self.id_prefix:
            _check_run("Deliver", self.id_prefix, self.id_first, n)
        else:
            _check_ids("Deliver.ids", self.ids)
        if self.live and max(self.live) >= n:
            raise SchemaError("Deliver.live", self.live, f"indices below count = {n}")


class DeliverLists(NamedTuple):
    """A Deliver's per-item lists in full (deliver_lists)."""

    ids: list[str]
    live: list[int]
    attempts: list[int]
    sizes: list[int]
    nframes: list[int]


def deliver_lists(msg: Any, blob_bytes: int) -> DeliverLists:
    """The per-item lists of a checked Deliver (or its view), its compact forms expanded; `blob_bytes`: its body
    blob's length (a packed segment's item sizes are equal shares of it)."""
    n = msg.count
    live = msg.live or list(range(n))
    attempts = msg.attempts * len(live) if len(msg.attempts) == 1 else msg.attempts
    return DeliverLists(_expanded_ids(msg, n), live, attempts, *_expanded_sizes(msg, blob_bytes, n))


OMITTED: list[Any] = []  # never mutated: a per-item list a compact form leaves out


def compact_lists(ids: list[str], run: tuple[str, int] | None, wire: Any) -> dict[str, Any]:
    """The id and size fields of a PutBatch or Deliver for `ids` (a run of generated ids if `run`: (prefix,
    first)) and `wire` (a segments.WirePayload), in their compact forms where they apply: what put_lists and
    deliver_lists expand."""
    packed = wire.packed
    return {"ids": OMITTED if run else ids, "id_prefix": run[0] if run else "", "id_first": run[1] if run else 0,
            "sizes": OMITTED if packed else wire.sizes, "nframes": OMITTED if packed else wire.nframes}


def _expanded_ids(msg: Any, n: int) -> list[str]:
    return hex_ids()(msg.id_prefix, msg.id_first, n) if msg.id_prefix else msg.ids


def _expanded_sizes(msg: Any, blob_bytes: int, n: int) -> tuple[list[int], list[int]]:
    return (shares(blob_bytes, n), [0] * n) if msg.packed else (msg.sizes, msg.nframes)


def shares(total: int, count: int) -> list[int]:
    """`total` bytes split into `count` sizes differing by at most one (a packed segment's per-item sizes)."""
    share, extra = divmod(total, count)
    return [share + 1] * extra + [share] * (count - extra)


def _check_run(where: str, prefix: str, first: int, count: int) -> None:
    """A run's prefix as channel.IdSource makes one (ASCII, no NUL or '%', ending in '-': an id's counter is what
    follows its last '-') and its counters below 2**63."""
    if not prefix.isascii() or "\0" in prefix or "%" in prefix or prefix[-1] != "-":
        raise SchemaError(f"{where}.id_prefix", prefix, "ASCII without NUL or %, ending in '-'")
    if first + count > I64 + 1:
        raise SchemaError(f"{where}.id_first", first, f"a run of {count} below 2**63")


@register_schema("rs.ack", 2)
class Ack:
    """Consumer -> broker: parcels whose every item is done (`parcels`), single items done (`acked`) and
    items refused as undecodable (`rejected`, with one reason each); items as flat (segment, index)
    pairs. Sent again until confirmed. The broker applies rejections first, then pairs, then parcels."""

    queue: str = limit(max_len=128)
    parcels: list[int] = limit(max_len=MAX_BATCH, ge=0)
    acked: list[int] = limit(max_len=2 * MAX_BATCH, ge=0)
    rejected: list[int] = limit(max_len=2 * MAX_BATCH, ge=0)
    reasons: list[str] = limit(max_len=MAX_BATCH)

    def check(self) -> None:
        """Cross-field rules (run after the per-field checks)."""
        _check_pairs("Ack.acked", self.acked)
        _check_pairs("Ack.rejected", self.rejected)
        _check_same_length("Ack.reasons", len(self.rejected) // 2, self.reasons)


@register_schema("rs.ack_confirm", 2)
class AckConfirm:
    """Broker -> consumer: these acked / rejected (segment, index) pairs and parcels are recorded; stop
    resending them."""

    pairs: list[int] = limit(max_len=2 * MAX_BATCH, ge=0)
    parcels: list[int] = limit(max_len=MAX_BATCH, ge=0)

    def check(self) -> None:
        """Cross-field rules (run after the per-field checks)."""
        _check_pairs("AckConfirm.pairs", self.pairs)


@register_schema("rs.detach", 1)
class Detach:
    """Endpoint -> broker on clean shutdown: forget me; a consumer's un-acked items are requeued now."""

    queue: str = limit(max_len=128)
    role: Literal["producer", "consumer"]
