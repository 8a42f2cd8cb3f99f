"""Tensors as separate frames: a tensor's descriptor (msgpack ext type 1 or 2 inside a body, see codec.py)
<-> a tensor viewing the received frame buffers, with every size, count and dtype checked first."""

import math
import struct
from typing import Any, Sequence

import numpy
import torch

from rollspec.transport.config import CodecLimits
from rollspec.transport.dtypes import DTYPE_BY_CODE, tensor_from_buffer
from rollspec.transport.errors import MessageRejected, RejectReason

TENSOR_EXT = 1
SPLIT_TENSOR_EXT = 2
TENSOR_HEAD = struct.Struct("<IBB")  # frame index, dtype code, ndim; then ndim int64 dims
SPLIT_HEAD = struct.Struct("<IIBB")  # first frame index, frame count, dtype code, ndim; then ndim int64 dims
DIM = struct.Struct("<q")
_DIMS: dict[int, struct.Struct] = {}  # ndim -> the dims' layout, built on first use


def check_sizes(body: Any, frames: Sequence[Any], limits: CodecLimits) -> list[memoryview]:
    body_bytes = len(body) if type(body) is bytes else memoryview(body).nbytes
    if body_bytes > limits.max_header_bytes:
        raise MessageRejected(RejectReason.OVERSIZED, f"body of {body_bytes} bytes > {limits.max_header_bytes}")
    if not frames:
        return []
    if len(frames) > limits.max_frames:
        raise MessageRejected(RejectReason.OVERSIZED, f"{len(frames)} frames > {limits.max_frames}")
    buffers = [memoryview(f) for f in frames]
    total = body_bytes
    for buffer in buffers:
        if buffer.nbytes > limits.max_frame_bytes:
            raise MessageRejected(RejectReason.OVERSIZED, f"frame of {buffer.nbytes} bytes > {limits.max_frame_bytes}")
        total += buffer.nbytes
    if total > limits.max_message_bytes:
        raise MessageRejected(RejectReason.OVERSIZED, f"message of {total} bytes > {limits.max_message_bytes}")
    return [b if (b.format == "B" and b.ndim == 1) else b.cast("B") for b in buffers]


def tensor_from_ext(code: int, data: bytes, buffers: list[memoryview], used: list[bool],
                     limits: CodecLimits) -> torch.Tensor:
    split = code == SPLIT_TENSOR_EXT
    head = SPLIT_HEAD if split else TENSOR_HEAD
    if (not split and code != TENSOR_EXT) or len(data) < head.size:
        raise MessageRejected(RejectReason.MALFORMED, f"unknown ext type {code} ({len(data)} bytes)")
    if split:
        index, count, dtype_code, ndim = head.unpack_from(data)
        if count < 2:
            raise MessageRejected(RejectReason.MALFORMED, f"split tensor of {count} frame(s)")
    else:
        (index, dtype_code, ndim), count = head.unpack_from(data), 1
    if ndim > limits.max_ndim or len(data) != head.size + ndim * DIM.size:
        raise MessageRejected(RejectReason.MALFORMED, f"tensor descriptor with ndim {ndim} and {len(data)} bytes")
    dtype = DTYPE_BY_CODE.get(dtype_code)
    if dtype is None:
        raise MessageRejected(RejectReason.MALFORMED, f"unknown tensor dtype code {dtype_code}")
    if index + count > len(buffers) or (used[index] if count == 1 else any(used[index:index + count])):
        raise MessageRejected(RejectReason.MALFORMED, f"tensor frame {index} missing or referenced twice")
    shape = dims_layout(ndim).unpack_from(data, head.size)  # one C call per tensor
    if shape and min(shape) < 0:
        raise MessageRejected(RejectReason.MALFORMED, f"negative tensor dimension in {shape}")
    numel = math.prod(shape)
    nbytes = numel * dtype.itemsize
    # span bounds the strides too: an empty tensor of shape (0, 2**62, 2**62) holds no bytes, yet torch
    # overflows computing its strides (a RuntimeError, not a rejection, found by fuzzing).
    span = numel if numel else math.prod([max(dim, 1) for dim in shape])
    if span * dtype.itemsize > limits.max_frame_bytes:
        raise MessageRejected(RejectReason.OVERSIZED, f"tensor {shape} spans {span * dtype.itemsize} bytes > "
                              f"{limits.max_frame_bytes}")
    if count == 1:
        part = buffers[index]
        if nbytes != part.nbytes:
            raise MessageRejected(RejectReason.MALFORMED, f"tensor {dtype} {shape} needs {nbytes} bytes, "
                                  f"1 frame(s) hold {part.nbytes}")
        used[index] = True
        return tensor_from_buffer(part, dtype, shape)
    parts = buffers[index:index + count]
    got = sum([part.nbytes for part in parts])
    if nbytes != got or not all([part.nbytes for part in parts]):
        raise MessageRejected(RejectReason.MALFORMED, f"tensor {dtype} {shape} needs {nbytes} bytes, "
                              f"{count} frame(s) hold {got}")
    used[index:index + count] = [True] * count
    return tensor_from_buffer(_join(parts, nbytes), dtype, shape)


def dims_layout(ndim: int) -> struct.Struct:
    """The layout of a descriptor's ndim int64 dims (one struct call per tensor, cached per ndim)."""
    layout = _DIMS.get(ndim)
    if layout is None:
        layout = _DIMS[ndim] = struct.Struct(f"<{ndim}q")
    return layout


def _join(parts: list[memoryview], nbytes: int) -> memoryview:
    """The frames of a split tensor in one fresh writable buffer (memcpy in C, no torch threads). numpy.empty
    is plain malloc, which reuses freed 4 MiB blocks: torch.empty mapped fresh pages every time (~680 page
    faults and ~1.7 ms per 4 MiB join against ~10 and ~0.15-0.25 ms)."""
    out = memoryview(numpy.empty(nbytes, dtype=numpy.uint8))
    start = 0
    for part in parts:
        out[start:start + part.nbytes] = part
        start += part.nbytes
    return out
