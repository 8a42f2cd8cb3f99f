"""Projections of the generation-time forward through a small-row fp32 GEMM kernel on CPU
(kernels/small_gemm.c, loaded by `cpu_kernels`), with torch's matmul as the fallback.

Why: MKL's sgemm time grows with the row count at 1-16 rows (see the C file), so a verify of
k + 1 tokens cost ~2 decode steps; the kernel's time stays near one row's until it is compute
bound, and a row's result does not depend on the other rows of the call (bit batch-invariant).
"""

from __future__ import annotations

import dataclasses

import torch

from rollspec.engine import cpu_kernels

PANEL = 32
MULTI_THREAD_MAX_ROWS = 16  # above this, MKL with several threads beats one core
_F32 = torch.float32


@dataclasses.dataclass(frozen=True, slots=True)
class ProjWeight:
    """A projection's weight as [in, out] (`t`, what torch reads) and, for fp32 on CPU with the
    kernels loaded, packed into 32-column panels (`packed`)."""

    t: torch.Tensor
    packed: torch.Tensor | None

    def mm(self, x_XK: torch.Tensor) -> torch.Tensor:
        """x @ W."""
        if self.packed is not None and cpu_kernels.active and _fits(x_XK):
            return _run(x_XK, self, None)
        return torch.mm(x_XK, self.t)

    def addmm(self, c_XN: torch.Tensor, x_XK: torch.Tensor) -> torch.Tensor:
        """c + x @ W, a new tensor (torch.addmm's semantics with alpha = beta = 1)."""
        if self.packed is not None and cpu_kernels.active and _fits(x_XK) and _fits(c_XN):
            return _run(x_XK, self, c_XN)
        return torch.addmm(c_XN, x_XK, self.t)


def proj_weight(w_KN: torch.Tensor) -> ProjWeight:
    """ProjWeight of an [in, out] weight; packs it when the kernel can run on it."""
    w_KN = w_KN.detach().contiguous()
    packed = None
    if w_KN.device.type == "cpu" and w_KN.dtype == torch.float32 and cpu_kernels.library() is not None:
        K, N = w_KN.shape
        panels = -(-N // PANEL)
        padded_KP = torch.zeros(K, panels * PANEL, dtype=w_KN.dtype)
        padded_KP[:, :N] = w_KN
        packed = padded_KP.view(K, panels, PANEL).transpose(0, 1).contiguous()
    return ProjWeight(w_KN, packed)


def _fits(x: torch.Tensor) -> bool:
    # fp32 CPU rows with unit column stride and no autograd (the kernels record no graph); with several
    # intra-op threads only the small row counts.
    # Cheapest checks (~0.5 us in all): this runs before every projection of a decode step.
    return (x.dtype is _F32 and x.is_cpu and x.ndim == 2 and x.stride(1) == 1 and not x.requires_grad
            and (x.shape[0] <= MULTI_THREAD_MAX_ROWS or torch.get_num_threads() == 1))


def _run(x_MK: torch.Tensor, w: ProjWeight, c_MN: torch.Tensor | None) -> torch.Tensor:
    M, K = x_MK.shape
    N = w.t.shape[1]
    if K != w.t.shape[0] or (c_MN is not None and tuple(c_MN.shape) != (M, N)):
        raise RuntimeError(f"small_gemm: shapes {tuple(x_MK.shape)} @ {tuple(w.t.shape)}"
                           f"{'' if c_MN is None else f' + {tuple(c_MN.shape)}'} do not match")
    y_MN = torch.empty(M, N, dtype=torch.float32)
    if M:
        cpu_kernels.library().small_gemm(  # type: ignore[union-attr]
            M, N, K, x_MK.data_ptr(), x_MK.stride(0), w.packed.data_ptr(),  # type: ignore[union-attr]
            None if c_MN is None else c_MN.data_ptr(), 0 if c_MN is None else c_MN.stride(0), y_MN.data_ptr(), N)
    return y_MN
