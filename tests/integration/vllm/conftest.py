"""Models on disk for the vLLM backend tests, and engines that are always shut down.

Policies use head_dim 64 (vLLM's CPU attention takes 32, 64, 80, ... only). Every vLLM engine
started here goes through `start`, which closes it at module teardown, so no engine-core
process outlives its test module. VLLM_HOST_IP is set to loopback by tests/conftest.py.
"""

import copy

import pytest
import torch

from rollspec.backends.drafter_spec import DrafterSpec
from rollspec.backends.eagle3_head import write_eagle3_dir
from rollspec.engine.config import EngineConfig
from rollspec.engine.sampling_params import SamplingParams
from rollspec.engine.sequence import Request
from rollspec.models.hf_dir import write_eagle_dir, write_model_dir
from rollspec.models.random_models import random_decoder, random_eagle_head, tiny_config

pytest.importorskip("vllm", reason="the vLLM backend tests need vllm (scripts/setup.sh installs it)")

VOCAB = 96
POLICY_CFG = tiny_config(vocab_size=VOCAB, hidden_size=128, intermediate_size=256, num_layers=4, num_heads=2,
                         num_kv_heads=1, head_dim=64)
SMALL_VOCAB = 8
SMALL_CFG = tiny_config(vocab_size=SMALL_VOCAB, hidden_size=128, intermediate_size=256, num_layers=2, num_heads=2,
                        num_kv_heads=1, head_dim=64)
CONFIG = EngineConfig(max_batch_size=16, max_seq_len=96, k_max=3)


def noisy_copy(model, *, seed, std):
    """A draft close to `model` (its weights plus seeded noise): high but imperfect acceptance."""
    out = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in out.parameters():
            param.add_(std * torch.randn(param.shape, generator=generator))
    return out


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """Policy versions v0/v1 with matching draft models d0/d1 and EAGLE heads e0/e1, an EAGLE-3
    head, and a small-vocabulary policy with its drafters for the sampling test."""
    root = tmp_path_factory.mktemp("vllm-models")
    out = {}
    for v in (0, 1):
        policy = random_decoder(POLICY_CFG, seed=100 + v, std=0.3)
        out[f"policy{v}"] = write_model_dir(root / f"policy{v}", policy)
        out[f"draft{v}"] = write_model_dir(root / f"draft{v}", noisy_copy(policy, seed=200 + v, std=0.05))
        out[f"eagle{v}"] = write_eagle_dir(root / f"eagle{v}", random_eagle_head(POLICY_CFG, seed=300 + v, std=0.3))
    out["eagle3"] = write_eagle3_dir(root / "eagle3", POLICY_CFG, aux_layer_ids=(0, 1, 3), seed=400, std=0.3)
    small = random_decoder(SMALL_CFG, seed=11, std=0.5)
    out["small"] = write_model_dir(root / "small", small)
    out["small_draft"] = write_model_dir(root / "small_draft", random_decoder(SMALL_CFG, seed=12, std=0.5))
    out["small_eagle"] = write_eagle_dir(root / "small_eagle", random_eagle_head(SMALL_CFG, seed=13, std=0.5))
    return out


@pytest.fixture(scope="module")
def start():
    """start(policy_dir, drafter_spec, **kw) -> a VllmGenerator closed when the module ends."""
    from rollspec.backends.vllm_backend import VllmGenerator

    started = []

    def _start(policy_path, drafter=DrafterSpec(), config=CONFIG, **kwargs):
        generator = VllmGenerator(policy_path, config, drafter=drafter, **kwargs)
        started.append(generator)
        return generator

    yield _start
    for generator in started:
        generator.close()


def greedy_requests(tag, *, num=12, max_new_tokens=40, seed=5):
    """Prompts of different lengths with budgets that end at different steps; every other one
    may stop early on token 5."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(num):
        prompt = tuple(torch.randint(0, VOCAB, (int(torch.randint(2, 24, (1,), generator=gen)),), generator=gen).tolist())
        params = SamplingParams(temperature=0.0, max_new_tokens=int(torch.randint(8, max_new_tokens, (1,), generator=gen)),
                                stop_token_ids=(5,) if i % 2 else ())
        out.append(Request(request_id=f"{tag}{i}", prompt_ids=prompt, params=params))
    return out


def mean_acceptance_length(completions):
    verify = sum(c.stats.num_verify_steps for c in completions)
    return 1.0 + sum(c.stats.num_accepted for c in completions) / verify if verify else 1.0
