"""The draft model's catch-up and its chain of k draws and k - 1 forwards as one C call each
(kernels/draft_chain.c) for fp32 on CPU: the same kernels in the same order as the Python path in
drafters/draft_model.py (draws through head_sample, forwards through fused_stack), so the
proposal is identical, without a Python round trip per drafted token. `catch_up` returns None and
`run` False when the call does not apply, and the caller runs the Python path.

Shape legend: B rows, K drafted, V vocab, D hidden.
"""

from __future__ import annotations

import torch

from rollspec.engine import cpu_kernels, fused_stack
from rollspec.engine.drafters.base import DraftContext
from rollspec.engine.drafters.draws import DraftDraws
from rollspec.engine.kv_cache import KVCache
from rollspec.engine.model import Decoder
from rollspec.engine.small_gemm import MULTI_THREAD_MAX_ROWS

_F32 = torch.float32


def catch_up(model: Decoder, cache: KVCache, ctx: DraftContext, lens: list[int], num_new: list[int],
             groups: list[tuple[int, int]]) -> torch.Tensor | None:
    """DraftModelDrafter._catch_up over each row group: each row's last hidden state [B, 1, D], or None
    when the kernel does not apply (the context's tokens not laid out as it reads them, or the model)."""
    tokens_BM, widest = ctx.tokens_BM, max(num_new)
    # Many rows on several threads: the forward's MKL path (fused_stack.forward declines them too).
    if not (tokens_BM.dtype is torch.long and tokens_BM.is_cpu and tokens_BM.stride(1) == 1
            and (len(lens) * widest <= MULTI_THREAD_MAX_ROWS or torch.get_num_threads() == 1)):
        return None
    bound = fused_stack.ready(model, cache)
    if bound is None:
        return None
    stack = bound.stack
    B, M, D = len(lens), tokens_BM.shape[1], model.embed_tokens.weight.shape[1]
    hidden_BD = torch.empty(B, D, dtype=_F32)
    ids, positions, rows = (torch.empty(B * widest, dtype=torch.long), torch.empty(B * widest, dtype=torch.long),
                            torch.empty(B, dtype=torch.long))
    x, out = torch.empty(B * widest, D, dtype=_F32), torch.empty(B * widest, D, dtype=_F32)
    lens_B, num_new_B = torch.tensor(lens, dtype=torch.long), torch.tensor(num_new, dtype=torch.long)
    scratch = stack.scratch(B * widest)
    H, G, E, I, has_input_norm = stack.dims
    for start, end in groups:
        status = cpu_kernels.library().draft_catch_up(  # type: ignore[union-attr]
            stack.num_layers, end - start, start, max(num_new[start:end]), D, model.embed_tokens.weight.shape[0],
            H, G, E, I, has_input_norm, tokens_BM.data_ptr(), tokens_BM.stride(0), M,
            lens_B.data_ptr() + 8 * start, num_new_B.data_ptr() + 8 * start, *bound.args, cache.max_len,
            model.norm.weight.data_ptr(), float(model.norm.eps), hidden_BD.data_ptr(), ids.data_ptr(),
            positions.data_ptr(), rows.data_ptr(), x.data_ptr(), out.data_ptr(), scratch.data_ptr())
        cpu_kernels.check_status(status, "draft model catch-up kernel")
    return hidden_BD[:, None]


def run(model: Decoder, cache: KVCache, hidden_B1D: torch.Tensor, lens: list[int], draws: DraftDraws) -> bool:
    """Fill draws.tokens_BK / draws.q_BKV from the catch-up's last hidden states; rows' chains
    write cache positions from `lens` on. False (nothing done) when the kernel does not apply."""
    if not (draws.kernel_ready and hidden_B1D.dtype is _F32 and hidden_B1D.is_cpu):
        return False
    bound = fused_stack.ready(model, cache)
    if bound is None:
        return False
    stack = bound.stack
    B, K = draws.tokens_BK.shape
    D, V = hidden_B1D.shape[-1], draws.q_BKV.shape[2]
    H, G, E, I, has_input_norm = stack.dims
    hidden_BD = hidden_B1D.reshape(B, D).clone()  # the kernel overwrites it step by step
    x_BD, positions_B, rows_B = (torch.empty(B, D, dtype=_F32), torch.empty(B, dtype=torch.long),
                                 torch.empty(B, dtype=torch.long))
    lens_B = torch.tensor(lens, dtype=torch.long)
    st, u_BK = draws.sampling, draws.uniforms_BK
    scratch = stack.scratch(B)
    status = cpu_kernels.library().draft_chain(  # type: ignore[union-attr]
        stack.num_layers, B, K, D, V, H, G, E, I, has_input_norm, hidden_BD.data_ptr(),
        draws.lm_packed.data_ptr(), st.temperature_B.data_ptr(), st.is_greedy_B.data_ptr(), int(st.unit_temperature),
        u_BK.data_ptr(), u_BK.stride(0), *bound.args, lens_B.data_ptr(),
        cache.max_len, model.norm.weight.data_ptr(), float(model.norm.eps), draws.tokens_BK.data_ptr(),
        draws.q_BKV.data_ptr(), x_BD.data_ptr(), positions_B.data_ptr(), rows_B.data_ptr(), draws.scratch.data_ptr(),
        scratch.data_ptr())
    cpu_kernels.check_status(status, "draft chain kernel")
    return True
