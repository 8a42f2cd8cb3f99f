"""Methods mixed into vLLM's worker (`worker_extension_cls`): in-place reload of the policy and of
the drafter from a staged safetensors file, called by name through `collective_rpc`.

This module runs inside vLLM's engine-core process. vLLM's own `reload_weights` reloads only the
target model, never `model_runner.drafter.model`: a drafter whose weights silently stay at the
old version is exactly the failure peers report, so the drafter gets its own reload here. Both
reuse vLLM's layer-wise in-place reload, which copies into the existing tensor storage, so
modules the drafter shares with the policy (EAGLE's embeddings and LM head) stay shared.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from safetensors import safe_open


def _tensors(path: str) -> Iterator[tuple[str, torch.Tensor]]:
    with safe_open(path, framework="pt") as handle:
        for name in handle.keys():
            yield name, handle.get_tensor(name)


class RollspecWorkerExtension:
    """Added to vLLM's worker class; `self` is the worker (it owns `model_runner`, `vllm_config`)."""

    def rollspec_reload_policy(self, path: str) -> int:
        """Load the target model's weights from the safetensors file `path` (HF names)."""
        self.model_runner.reload_weights(weights_iterator=_tensors(path))
        return 1

    def rollspec_reload_draft(self, path: str) -> int:
        """Load the drafter's weights (its checkpoint names) from `path`; 0 if it has no model."""
        from vllm.config import set_current_vllm_config
        from vllm.model_executor.model_loader.reload.inplace import reload_weights

        model = getattr(getattr(self.model_runner, "drafter", None), "model", None)
        if model is None:
            return 0
        with set_current_vllm_config(self.vllm_config):
            reload_weights(self.vllm_config, model, weights_iterator=_tensors(path), weights_path=None,
                           is_checkpoint_format=True)
        return 1

    def rollspec_weight_sums(self) -> dict[str, float]:
        """Sum of every parameter of the policy and the drafter: lets tests see that a reload
        reached the worker (and that a rejected one did not)."""
        out = {"policy": float(sum(p.double().sum() for p in self.model_runner.get_model().parameters()))}
        model = getattr(getattr(self.model_runner, "drafter", None), "model", None)
        if model is not None:
            out["draft"] = float(sum(p.double().sum() for p in model.parameters()))
        return out
