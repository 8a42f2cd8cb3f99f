"""Helpers for tests that play a broker's peers with raw DEALER sockets, so they see exactly which
messages the broker sends."""

from __future__ import annotations

import zmq

from rollspec.transport import codec
from rollspec.transport.protocol import Heartbeat
from rollspec.transport.schemas import PromptItem


def prompt(pid: str, sample_index: int = 0) -> PromptItem:
    """A small work item."""
    return PromptItem(prompt_id=pid, group_id="g", sample_index=sample_index, token_ids=[1, 2], policy_version=0)


def connect(context: zmq.Context, address: str, role: str, window_items: int = 4) -> zmq.Socket:
    """A DEALER connected to the broker at `address` and registered on queue "q" with a heartbeat."""
    socket = context.socket(zmq.DEALER)
    socket.connect(address)
    socket.send_multipart(codec.encode(Heartbeat(queue="q", role=role, window_items=window_items,
                                                 window_bytes=1 << 20, held=[], acked=[], parcels=[])))
    return socket


def next_message(socket: zmq.Socket, timeout_s: float = 5.0):
    """The next message from the broker (its header frame, decoded)."""
    assert socket.poll(int(timeout_s * 1000)), "nothing from the broker"
    return codec.decode(socket.recv_multipart()[:1])
