"""The consumer's protocol engine, run by whichever thread owns the socket (the application inside
get_batch / ack, else the I/O thread; see shared_loop.py): accepts deliveries (parcels), drops duplicates
by message id, sends acks (resending them in heartbeats until confirmed) and reports what it holds.

Acks are per parcel where they can be: a parcel whose items the application all acked goes back as
one number. Items acked while others of their parcel are still out go back as (segment, index) pairs
at once (so the broker frees their window slots), as do items in a parcel that was not handed over
whole (some of its items were duplicates still held here, or undecodable): the broker must not take
a parcel ack for those as covering items this consumer never finished.
"""

import itertools
import logging
import math
import threading
from bisect import bisect_left
from collections import Counter, deque
from itertools import repeat
from operator import attrgetter, rshift
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

import zmq

from rollspec.transport import codec, segments
from rollspec.transport.channel import Delivery
from rollspec.transport.checksum import crc32
from rollspec.transport.config import ConsumerConfig
from rollspec.transport.dedup import BoundedIds
from rollspec.transport.errors import MessageRejected, RejectReason
from rollspec.transport.held_runs import MIN_ITEMS, HeldRuns
from rollspec.transport.io_loop import IoLoop
from rollspec.transport.protocol import Ack, AckConfirm, Deliver, DeliverLists, Detach, Heartbeat, deliver_lists
from rollspec.transport.registry import DEFAULT_REGISTRY
from rollspec.transport.stats import ConsumerStats, RejectCounter

log = logging.getLogger(__name__)


def _pairs(tokens: Iterable[int]) -> list[int]:
    """Tokens flattened to the wire's (segment, index) pairs (split_token inlined: one call per ack batch)."""
    return [n for token in tokens for n in (token >> 32, token & 0xFFFFFFFF)]


# A received, not yet decoded item: (msg_id, token, attempt, body, frames), token = parcel << 32 | index.
# Decoding happens on the application thread, in get(). Small bodies are copied out as bytes and tokens
# are ints so that, for the common item without tensors, this tuple holds no GC-tracked object: the
# cyclic collector otherwise costs more per item than the rest of the receive path.
RawItem = tuple[str, int, int, bytes | memoryview, tuple[Any, ...]]
_COPY_BODIES_UP_TO = 4 << 20
_LOW = 0xFFFFFFFF
_token = attrgetter("token")


class PackedParcel(NamedTuple):
    """A received packed parcel, decoded in one call on the application thread: the segment body (all
    `count` rows) and, per item handed over, its id, token, attempt and row index."""

    blob: Any
    count: int
    ids: list[str]
    tokens: list[int]
    attempts: list[int]
    rows: list[int]


Entry = RawItem | PackedParcel | Delivery  # what `ready` holds (a Delivery: decoded at intake, _take_tensor_item)


def _parcel_spans(tokens: list[int]) -> Iterator[tuple[int, int, int]]:
    """(parcel, start, stop) of each stretch of `tokens` (parcel << 32 | index) from one parcel, found by bisection
    where tokens come sorted (an ack of one parcel, or several in order); a parcel out of order starts a new one."""
    n, start = len(tokens), 0
    while start < n:
        parcel = tokens[start] >> 32
        stop = n if tokens[-1] >> 32 == parcel else bisect_left(tokens, (parcel + 1) << 32, start)
        yield parcel, start, stop
        start = stop


def _tokens(parcel: int, indices: list[int]) -> list[int]:
    base = parcel << 32
    if indices and indices[-1] - indices[0] + 1 == len(indices):
        return list(range(base + indices[0], base + indices[-1] + 1))
    return [base | i for i in indices]


class ConsumerCore:
    """IoHandler of a consumer. Everything below `lock` is shared with the application thread."""

    loop: IoLoop  # set by the endpoint right after the loop is built (the loop needs this handler first)
    service_after_message = False  # deliveries and confirmations queue nothing to send (re-acks of duplicates wake)

    def __init__(self, queue: str, config: ConsumerConfig) -> None:
        self.queue = queue
        self.config = config
        self.lock = threading.RLock()  # no waits on it: a plain lock (a Condition's `with` is Python-level)
        self.ready: deque[Entry] = deque()
        self.registry = DEFAULT_REGISTRY  # the endpoint's (set by ZmqConsumer): decodes items with tensors
        self.held: dict[str, int] = {}                   # delivered (or ready) and not yet acked -> token
        self.held_runs = HeldRuns()                      # the same, for whole parcels of generated ids
        # parcel -> [segment, items not yet acked or rejected, acks go as pairs only, bytes per item,
        # (prefix, first, count) if it holds a whole run of generated ids (see remember_done) else None]
        self.parcels: dict[int, list[Any]] = {}
        self.done = BoundedIds(config.dedup_window)      # acked ids: a redelivery is re-acked, not re-run
        self.acks: list[int] = []                         # (segment << 32 | index) of items to ack
        self.parcel_acks: list[int] = []
        self.rejects: list[tuple[int, str]] = []
        self.unconfirmed: dict[int, None] = {}
        self.unconfirmed_parcels: dict[int, None] = {}
        # The broker's view of our window: items (and bytes) delivered whose acks have not been sent, and
        # of those, the ones acked (or refused) by the application whose acks wait in the lists above.
        self.out_items = self.out_bytes = 0
        self.acked_items = self.acked_bytes = 0
        self.ack_deadline = math.inf  # pending acks go out by then (see acks_due)
        self.stats = ConsumerStats()
        self.reject_log = RejectCounter(f"consumer:{queue}")
        self._next_heartbeat = 0.0

    def on_message(self, frames: list[zmq.Frame]) -> None:
        try:
            header = frames[0].buffer
            msg = codec.decode_view(header, Deliver, self.config.limits)  # the common message, in one C call
            if msg is None:
                msg = codec.decode([header], limits=self.config.limits)
                if type(msg) is AckConfirm:
                    self._on_confirm(msg.pairs, msg.parcels)
                    return
                if type(msg) is not Deliver:
                    raise MessageRejected(RejectReason.UNEXPECTED, f"{type(msg).__name__} sent to a consumer")
            if msg.confirmed or msg.confirmed_parcels:  # first: valid even if the body turns out damaged
                self._on_confirm(msg.confirmed, msg.confirmed_parcels)
            lists = deliver_lists(msg, len(frames[1]) if len(frames) > 1 else 0)
            if msg.count == 1 and lists.nframes[0] and self._take_tensor_item(msg, lists, frames):
                return
            self._on_deliver(msg, lists, frames[1:])
        except MessageRejected as exc:
            # A damaged delivery is not acked: the broker sees it missing from our heartbeat and resends.
            with self.lock:
                self.reject_log.record(exc, log)

    def service(self, now: float) -> float:
        with self.lock:
            # Lists swapped out only when non-empty (the common ack is one parcel and nothing else); an empty
            # one is replaced by () so that an append after the lock is released cannot reach this Ack.
            parcels, acked, rejected = self.parcel_acks or (), self.acks or (), self.rejects or ()
            if parcels:
                self.parcel_acks = []
                self.unconfirmed_parcels.update(dict.fromkeys(parcels))
            if acked:
                self.acks = []
                self.unconfirmed.update(dict.fromkeys(acked))
            if rejected:
                self.rejects = []
                self.unconfirmed.update(dict.fromkeys([token for token, _ in rejected]))
            if parcels or acked or rejected:
                self.out_items -= self.acked_items
                self.out_bytes -= self.acked_bytes
                self.acked_items = self.acked_bytes = 0
                self.ack_deadline = math.inf
            heartbeat = now >= self._next_heartbeat
            if heartbeat:
                held = _pairs(self.parcels[t >> 32][0] << 32 | (t & _LOW) for t in self.held.values())
                held += [n for p, i in self.held_runs.open_items() for n in (self.parcels[p][0], i)]
                resend = _pairs(self.unconfirmed)
                resend_parcels = list(self.unconfirmed_parcels)
        if parcels or acked or rejected:
            # Built from this core's own state (ints from tokens, reasons from RejectReason): no checks here;
            # the broker checks it like any message.
            self.loop.send(codec.encode_trusted(
                Ack, queue=self.queue, parcels=parcels, acked=_pairs(acked) if acked else (),
                rejected=_pairs(token for token, _ in rejected) if rejected else (),
                reasons=[reason for _, reason in rejected] if rejected else ()))
        if heartbeat:
            self._next_heartbeat = now + self.config.heartbeat_s
            self.loop.send(codec.encode(Heartbeat(
                queue=self.queue, role="consumer", window_items=self.config.window_items,
                window_bytes=self.config.window_bytes, held=held, acked=resend, parcels=resend_parcels)))
        return self._next_heartbeat

    def on_stop(self) -> None:
        self.loop.send(codec.encode(Detach(queue=self.queue, role="consumer")))

    # --- called by the application thread, lock held ----------------------------------------------------
    def acks_due(self, now: float) -> float:
        """After settle(): when the pending acks must be sent. At once (returns `now`) once half of our
        window (items or bytes) is used up at the broker, counting the acks not yet sent: sooner would
        only cost a message each way per ack, later could starve us. Else by the deadline (set now if
        none), so a burst of acks goes as one Ack and frees its slots together."""
        config = self.config
        if 2 * self.out_items >= config.window_items or 2 * self.out_bytes >= config.window_bytes:
            return now
        if self.ack_deadline == math.inf:
            self.ack_deadline = now + config.ack_delay_s
        return self.ack_deadline

    def pop_held(self, ids: list[str], deliveries: Sequence[Delivery]) -> list[int | None]:
        """Per acked delivery, its token, now no longer held (popped from `held`, or marked in held_runs by its
        token: a parcel's in one slice), or None if it was not held (acked before)."""
        runs = self.held_runs
        if not runs.parcels:
            return list(map(self.held.pop, ids, repeat(None)))
        tokens: list[Any] = list(map(_token, deliveries))
        out: list[int | None] = []
        for parcel, start, stop in _parcel_spans(tokens):  # where they come in order (else take() refuses)
            if parcel in runs.parcels and runs.take(tokens, start, stop):
                out += tokens[start:stop]
            else:
                out += [token if token >> 32 in runs.parcels and runs.take_one(token) else self.held.pop(msg_id, None)
                        for msg_id, token in zip(ids[start:stop], tokens[start:stop])]
        return out

    def remember_done(self, ids: list[str], tokens: list[int]) -> None:
        """Add acked ids (just popped from `held`, with their tokens) to the done window: the ids of a whole run
        parcel acked at once (the common ack) as one range, the rest one by one. Before settle(), which counts
        the parcels down. Held ids are never in the window, so none of these is."""
        n = len(tokens)
        if n and min(tokens) >> 32 != max(tokens) >> 32 and tokens != sorted(tokens):  # C passes, no new ints
            self.done.add_absent(ids)  # several parcels, interleaved: not worth grouping
            return
        records, done = self.parcels, self.done
        for parcel, start, stop in _parcel_spans(tokens):  # one parcel, or several in order
            record = records.get(parcel)
            run = record[4] if record is not None else None
            # n distinct held tokens of a run parcel of n items, none acked or refused before: its whole run
            if run is not None and stop - start == run[2] == record[1]:  # type: ignore[index]
                done.add_run(run[0], run[1], ids[start:stop] if start or stop < n else ids)
            else:
                done.add_absent(ids[start:stop] if start or stop < n else ids)

    def settle(self, tokens: list[int]) -> None:
        """Account acks of held items (their tokens): whole parcels become parcel acks, the rest pairs."""
        parcels = self.parcels
        if tokens and min(tokens) >> 32 == max(tokens) >> 32:  # one parcel (the common ack): two C passes, no dict
            counts: Any = ((tokens[0] >> 32, len(tokens)),)
        else:
            counts = Counter(map(rshift, tokens, repeat(32))).items()  # one C pass, however many parcels
        for parcel, count in counts:
            record = parcels.get(parcel)
            if record is None:
                continue
            self.acked_items += count
            self.acked_bytes += count * record[3]
            record[1] -= count
            if record[1] <= 0:
                del parcels[parcel]
                if not record[2]:
                    self.parcel_acks.append(parcel)
                    continue
            high = record[0] << 32
            self.acks.extend([high | (t & _LOW) for t in tokens if t >> 32 == parcel])

    def reject(self, msg_id: str, token: int, exc: MessageRejected) -> None:
        """An item handed over but undecodable: refused to the broker with the reason, never retried here."""
        self.reject_log.record(exc, log)
        if self.held.pop(msg_id, None) is None and not self.held_runs.take_one(token):
            return
        self.done.add(msg_id)
        record = self.parcels[token >> 32]
        record[4] = None  # no longer acked as a whole run
        self.acked_items += 1
        self.acked_bytes += record[3]
        record[1] -= 1
        record[2] = True
        if record[1] <= 0:
            del self.parcels[token >> 32]
        self.rejects.append((record[0] << 32 | (token & _LOW), exc.reason.value))

    # --- internals ---------------------------------------------------------------------------------------
    def _on_confirm(self, pairs: list[int], parcels: list[int]) -> None:
        with self.lock:
            pop = self.unconfirmed.pop
            for k in range(0, len(pairs), 2):
                pop(pairs[k] << 32 | pairs[k + 1], None)  # make_token, inlined
            for parcel in parcels:
                self.unconfirmed_parcels.pop(parcel, None)

    def _on_deliver(self, msg: Deliver, lists: DeliverLists, payload: list[zmq.Frame]) -> None:
        if not payload:
            raise MessageRejected(RejectReason.MALFORMED, "delivery without a body blob")
        wire = segments.receive(payload[0].buffer, [f.buffer for f in payload[1:]], blob_crc=msg.blob_crc,
                                sizes=lists.sizes, nframes=lists.nframes, live=lists.live, frame_crcs=msg.frame_crcs,
                                packed=msg.packed)
        ids, segment, live = lists.ids, msg.segment, lists.live
        live_ids = ids if len(live) == len(ids) else [ids[i] for i in live]
        with self.lock:
            done, held = self.done, self.held
            # a whole parcel of a run of generated ids: the done window tests it with one bisection
            run = (msg.id_prefix, msg.id_first) if msg.id_prefix and len(live) == len(ids) else None
            self.stats.received += len(live)
            if msg.parcel in self.parcels:  # the same Deliver twice (duplicated in transit)
                self.stats.duplicates_dropped += len(live)
                return
            if not live:
                return
            tokens = None
            runs = self.held_runs
            if done.isdisjoint(live_ids, run) and held.keys().isdisjoint(live_ids) \
                    and not (runs.parcels and self._in_held_runs(live_ids, run)):  # the common case, in C
                tokens = _tokens(msg.parcel, live)
                if run is not None and len(live) >= MIN_ITEMS:  # ids distinct by construction: no dict entries
                    runs.add(msg.parcel, run[0], run[1], len(live))
                else:
                    before = len(held)
                    held.update(zip(live_ids, tokens))
                    if len(held) - before != len(live_ids):  # an id twice in this parcel: undo (none was held)
                        for msg_id in live_ids:
                            held.pop(msg_id, None)
                        tokens = None
            if tokens is not None:
                fresh, attempts, whole = live, lists.attempts, True
            else:
                fresh, attempts, whole, seen = [], [], True, set()
                for i, attempt in zip(live, lists.attempts):
                    # An id twice in this parcel (never from our broker, whose ingress dedups): the first is
                    # handed over, the repeat acked at once like an id already done.
                    if ids[i] in done or ids[i] in seen:
                        if not self.acks:
                            self.loop.wake()  # service sends acks; it does not run after every message
                        self.acks.append(segment << 32 | i)
                        self.stats.duplicates_dropped += 1
                    elif ids[i] in held or ids[i] in runs:  # still held here under an earlier parcel: it acks it
                        self.stats.duplicates_dropped += 1
                        whole = False
                    else:
                        fresh.append(i)
                        attempts.append(attempt)
                        seen.add(ids[i])
                live_ids = [ids[i] for i in fresh]
                if not fresh:
                    return
                tokens = _tokens(msg.parcel, fresh)
                held.update(zip(live_ids, tokens))
            item_bytes = sum(map(len, payload)) // len(live)  # what the broker's byte window counts, about
            self.out_items += len(fresh)
            self.out_bytes += len(fresh) * item_bytes
            # [segment, items not yet acked or refused, acks go as pairs only, bytes per item]
            whole_run = (run[0], run[1], len(ids)) if run is not None and len(fresh) == len(ids) else None
            self.parcels[msg.parcel] = [segment, len(fresh), not whole, item_bytes, whole_run]
            if msg.packed:
                self.ready.append(PackedParcel(wire.blob, len(ids), live_ids, tokens, attempts, fresh))
            else:
                self._ready_items(payload[0], wire, lists.sizes, lists.nframes, live_ids, tokens, attempts, fresh)
            if max(attempts) > 1:
                self.stats.redelivered += sum([attempt > 1 for attempt in attempts])

    def _in_held_runs(self, ids: list[str], run: tuple[str, int] | None) -> bool:
        """Whether some of ids (a run, if given) may be held in held_runs (a run: if it meets a held one)."""
        if run is not None:
            return self.held_runs.overlaps(run[0], run[1], run[1] + len(ids))
        return any(map(self.held_runs.__contains__, ids))

    def _take_tensor_item(self, msg: Deliver, lists: DeliverLists, frames: list[zmq.Frame]) -> bool:
        """The common large-tensor delivery (one fresh item with tensor frames, intact) taken in one pass:
        checked as segments.receive and _on_deliver would, decoded here, by whichever thread received it,
        and queued as the Delivery get_batch hands out. A 4 MiB message then costs the application one pass
        of Python, with no raw tuple, payload record or second decode pass between the socket and the
        Delivery. Decoding views the frames (no copy), so it costs the same here as later; an undecodable
        item is refused to the broker at once. False, with nothing done, for anything else (a duplicate,
        a damaged or odd delivery): the general path handles it and words any rejection."""
        nframes, frame_crcs = lists.nframes[0], msg.frame_crcs
        if len(frames) != 2 + nframes or msg.packed or lists.live != [0] or (frame_crcs and len(frame_crcs) != nframes):
            return False
        blob, tensors = frames[1].buffer, [frame.buffer for frame in frames[2:]]
        if len(blob) != lists.sizes[0] or crc32(blob) != msg.blob_crc:
            return False
        if frame_crcs and any([crc32(frame) != crc for frame, crc in zip(tensors, frame_crcs)]):
            return False
        try:
            item = codec.decode_body(blob, tensors, registry=self.registry, limits=self.config.limits)
        except MessageRejected as exc:
            item = exc
        msg_id, parcel, attempt = lists.ids[0], msg.parcel, lists.attempts[0]
        nbytes = len(blob) + sum([len(frame) for frame in frames[2:]])
        with self.lock:
            if parcel in self.parcels or msg_id in self.done or msg_id in self.held or msg_id in self.held_runs:
                return False  # a duplicate: the general path counts it (and re-acks a finished one)
            self.stats.received += 1
            self.stats.redelivered += attempt > 1
            token = parcel << 32
            self.held[msg_id] = token
            self.out_items += 1
            self.out_bytes += nbytes
            self.parcels[parcel] = [msg.segment, 1, False, nbytes, None]  # as _on_deliver records a parcel
            if type(item) is MessageRejected:
                self.reject(msg_id, token, item)
                self.loop.wake()  # service sends the refusal; it does not run after every message
            else:
                self.ready.append(Delivery(msg_id, item, attempt, token))
        return True

    def _ready_items(self, blob_frame: zmq.Frame, wire: segments.WirePayload, sizes: list[int], nframes: list[int],
                     ids: list[str], tokens: list[int], attempts: list[int], fresh: list[int]) -> None:
        offsets = [0, *itertools.accumulate(sizes)]
        blob = blob_frame.bytes if offsets[-1] <= _COPY_BODIES_UP_TO else wire.blob
        frames, first_frame = wire.frames, wire.first_frame
        self.ready.extend([(msg_id, token, attempt, blob[offsets[i]:offsets[i + 1]],
                            tuple(frames[first_frame[i]:first_frame[i] + nframes[i]]) if nframes[i] else ())
                           for msg_id, token, attempt, i in zip(ids, tokens, attempts, fresh)])
