"""Build the generator a rollout config asks for: the native engine or vLLM, from the same
model directories and drafter spec."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from rollspec.backends.drafter_spec import DrafterSpec
from rollspec.backends.errors import UnsupportedDrafterError
from rollspec.engine.config import EngineConfig
from rollspec.engine.depth import DepthPolicy, FixedDepth
from rollspec.engine.drafters.build import DRAFTER_KINDS, build_drafter
from rollspec.engine.engine import Engine
from rollspec.engine.generator import Generator
from rollspec.engine.loader import load_model

Backend = Literal["native", "vllm"]
BACKENDS = ("native", "vllm")


def make_generator(backend: Backend, *, policy_path: str | Path, config: EngineConfig,
                   drafter: DrafterSpec = DrafterSpec(), depth: DepthPolicy | None = None, policy_version: int = 0,
                   draft_version: int = 0, enforce_eager: bool = True) -> Generator:
    """`depth` applies to the native engine (default: always `drafter.k`); vLLM takes its k, or
    its per-batch-size schedule, from `drafter` at start. vLLM is imported only when chosen."""
    if backend == "vllm":
        from rollspec.backends.vllm_backend import VllmGenerator

        return VllmGenerator(policy_path, config, drafter=drafter, policy_version=policy_version,
                             draft_version=draft_version, enforce_eager=enforce_eager)
    if backend != "native":
        raise ValueError(f"unknown rollout backend {backend!r}; expected one of {BACKENDS}")
    if drafter.kind not in DRAFTER_KINDS:
        raise UnsupportedDrafterError(f"drafter {drafter.kind!r} is not supported by the native engine; "
                                      f"expected one of {DRAFTER_KINDS}")
    policy = load_model(policy_path, dtype=config.torch_dtype, device=config.device, max_positions=config.cache_len)
    built = build_drafter(drafter.kind, policy=policy, config=config, draft_path=drafter.path,
                          ngram_min=drafter.ngram_min, ngram_max=drafter.ngram_max)
    if built is not None:
        built.version = draft_version
    depth = depth or FixedDepth(drafter.k if built is not None else 0)
    return Engine(policy.model, config, drafter=built, depth=depth, policy_version=policy_version)
