"""Tensor dtypes that may cross the wire, and tensor <-> raw-buffer conversion without copies."""

import torch

from rollspec.transport.errors import SchemaError

# Wire codes are part of the protocol: append new dtypes, never renumber.
DTYPE_CODES: dict[torch.dtype, int] = {
    torch.float32: 1,
    torch.bfloat16: 2,
    torch.float16: 3,
    torch.int64: 4,
    torch.int32: 5,
    torch.bool: 6,
    torch.uint8: 7,
    torch.float64: 8,
    torch.int16: 9,
    torch.int8: 10,
}
DTYPE_BY_CODE: dict[int, torch.dtype] = {code: dtype for dtype, code in DTYPE_CODES.items()}
DTYPE_NAMES: dict[torch.dtype, str] = {dtype: str(dtype).removeprefix("torch.") for dtype in DTYPE_CODES}
DTYPE_BY_NAME: dict[str, torch.dtype] = {name: dtype for dtype, name in DTYPE_NAMES.items()}


def check_sendable(tensor: torch.Tensor, where: str = "tensor") -> None:
    """Raise SchemaError unless the tensor is on the CPU and of a wire dtype."""
    if not tensor.is_cpu:  # a bool, where tensor.device builds a device object (this runs per tensor sent)
        raise SchemaError(where, tensor.device, "a CPU tensor (move it with .cpu() before sending)")
    if tensor.dtype not in DTYPE_CODES:
        raise SchemaError(where, tensor.dtype, f"one of {sorted(DTYPE_NAMES.values())}")


def tensor_buffer(tensor: torch.Tensor) -> memoryview:
    """Raw bytes of a CPU tensor as a flat byte memoryview; no copy when it is already contiguous.

    The view keeps the tensor's storage alive, which is what lets zmq send it without copying.
    """
    check_sendable(tensor)
    if tensor.numel() and tensor.dim() and not tensor.requires_grad and tensor.is_contiguous():
        # The common case in two torch calls instead of five (this runs once per tensor sent).
        return tensor.view(torch.uint8).numpy().data.cast("B")
    flat = tensor.detach().contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().data


def tensor_from_buffer(buffer: memoryview, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
    """A tensor over `buffer`, which holds exactly numel * itemsize bytes (the caller checked).

    Writable buffers (received zmq frames) are viewed without a copy; read-only ones (bytes) are
    copied, since torch tensors are always writable and writing into immutable bytes is undefined.
    """
    if buffer.nbytes == 0:
        return torch.empty(shape, dtype=dtype)
    source: memoryview | bytearray = bytearray(buffer) if buffer.readonly else buffer
    flat = torch.frombuffer(source, dtype=dtype)
    # frombuffer is already 1-D of numel elements; reshape costs more than frombuffer itself (cold, per message)
    return flat if len(shape) == 1 else flat.reshape(shape)
