"""Our requests in vLLM's terms and vLLM's outputs in ours.

Semantics kept equal to the native engine: token-id prompts, no implicit EOS stop (only
`stop_token_ids`, which stay in the output), logprobs of the processed distribution the token was
sampled from (`logprobs_mode=processed_logprobs`; greedy rows get the plain log-softmax), and a seed
on every request so a run is reproducible. Per-position acceptance comes from vLLM's per-request
speculative metrics at the `detailed` level (one accepted / drafted count per verify step).
"""

from __future__ import annotations

from typing import Any

from rollspec.engine.sequence import Completion, Request, SpecStats


def sampling_kwargs(request: Request, seed: int) -> dict[str, Any]:
    """Keyword arguments of `vllm.SamplingParams` for `request` (seed used when it carries none)."""
    params = request.params
    return dict(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k,
                max_tokens=params.max_new_tokens, stop_token_ids=list(params.stop_token_ids), ignore_eos=True,
                seed=params.seed if params.seed is not None else seed, logprobs=0, detokenize=False,
                skip_special_tokens=False)


def spec_stats(metrics: Any, num_tokens: int, k_max: int) -> SpecStats:
    """SpecStats from vLLM's RequestSpecDecodeMetrics (None without speculation). Decode steps are
    the tokens no verify step produced, less the first one (sampled by the prefill)."""
    if metrics is None:
        return SpecStats(max(num_tokens - 1, 0), 0, (0,) * k_max, (0,) * k_max)
    width = max(k_max, metrics.num_spec_tokens)
    drafted, accepted = [0] * width, [0] * width
    for num_drafted, num_accepted in zip(metrics.per_step_drafted, metrics.per_step_accepted):
        for j in range(num_drafted):
            drafted[j] += 1
        for j in range(num_accepted):
            accepted[j] += 1
    num_verify = len(metrics.per_step_drafted)
    emitted_by_verify = num_verify + sum(metrics.per_step_accepted)
    return SpecStats(max(num_tokens - 1 - emitted_by_verify, 0), num_verify, tuple(drafted), tuple(accepted))


def to_completion(request: Request, output: Any, *, k_max: int, policy_version: int, draft_version: int) -> Completion:
    """A finished vLLM RequestOutput as our Completion."""
    out = output.outputs[0]
    token_ids = tuple(out.token_ids)
    logprobs = tuple(entry[token].logprob for entry, token in zip(out.logprobs or [], token_ids))
    finish = out.finish_reason if out.finish_reason in ("stop", "length") else "length"
    return Completion(request_id=request.request_id, group_id=request.group_id, prompt_ids=request.prompt_ids,
                      token_ids=token_ids, logprobs=logprobs, finish_reason=finish,
                      stats=spec_stats(out.spec_decode_metrics, len(token_ids), k_max),
                      policy_version=policy_version, draft_version=draft_version)
