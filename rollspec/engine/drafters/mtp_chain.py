"""The MTP drafter's chain as one C call (kernels/mtp_chain.c) for fp32 on CPU: the heads' folded
weights (MTPLayer._folded) read by the torch path's math, up to float rounding, each draft drawn from
exactly the q reported (drafters/draws.py's kernel). `chain` returns False when the call does not
apply (torch fallback, top-k / top-p, other dtypes) and the caller runs the Python loop.

Shape legend: B rows, K drafted, V vocab, D hidden, I the MLP's inner width.
"""

from __future__ import annotations

import torch

from rollspec.engine import cpu_kernels
from rollspec.engine.drafters.draws import DraftDraws
from rollspec.engine.model import Decoder
from rollspec.engine.mtp_head import MTPHeads

_F32 = torch.float32


def chain(heads: MTPHeads, policy: Decoder, state_BD: torch.Tensor, token_B: torch.Tensor, draws: DraftDraws) -> bool:
    """Fill draws.tokens_BK / draws.q_BKV from the policy's hidden states before each row's pending
    token (state_BD, contiguous, overwritten) and that token (token_B); False when the kernel does not apply."""
    if not (draws.kernel_ready and state_BD.dtype is _F32 and state_BD.is_cpu and state_BD.is_contiguous()
            and token_B.dtype is torch.long and token_B.is_contiguous()):
        return False
    B, K = draws.tokens_BK.shape
    D, V = state_BD.shape[1], draws.q_BKV.shape[2]
    rows, eps = [], []
    for layer in heads.layers:
        f = layer._folded(policy.embed_tokens)
        weights = (f.state_DD.packed, f.gate_up_DI.packed, f.down_ID.packed)
        norm_D = layer.norm.weight
        if (any(w is None for w in weights) or f.embed_VD.dtype is not _F32 or not f.embed_VD.is_contiguous()
                or f.embed_VD.shape[0] != V or norm_D.dtype is not _F32 or not norm_D.is_contiguous()):
            return False
        rows.append([f.embed_VD.data_ptr(), *(w.data_ptr() for w in weights), norm_D.data_ptr()])
        eps.append(float(f.eps))
        inner = f.gate_up_DI.t.shape[1] // 2  # every head has the policy's MLP width
    heads_N5, eps_N = torch.tensor(rows, dtype=torch.long), torch.tensor(eps, dtype=_F32)
    x, normed, mm = (torch.empty(B, D, dtype=_F32) for _ in range(3))
    gate_up = torch.empty(B, 2 * inner, dtype=_F32)
    st, u_BK = draws.sampling, draws.uniforms_BK
    status = cpu_kernels.library().mtp_chain(  # type: ignore[union-attr]
        B, K, D, V, inner, len(rows), heads_N5.data_ptr(), eps_N.data_ptr(), state_BD.data_ptr(), token_B.data_ptr(),
        draws.lm_packed.data_ptr(), st.temperature_B.data_ptr(), st.is_greedy_B.data_ptr(), int(st.unit_temperature),
        u_BK.data_ptr(), u_BK.stride(0), draws.tokens_BK.data_ptr(), draws.q_BKV.data_ptr(), x.data_ptr(),
        normed.data_ptr(), mm.data_ptr(), gate_up.data_ptr(), draws.scratch.data_ptr())
    cpu_kernels.check_status(status, "MTP chain kernel")
    return True
