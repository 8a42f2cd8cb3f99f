"""One timed run per contender on a shared workload: our engine (plain or speculative),
transformers `generate`, transformers assisted generation."""

from __future__ import annotations

import dataclasses
import time
from functools import cached_property

import torch

from rollspec.engine.config import EngineConfig
from rollspec.engine.depth import FixedDepth
from rollspec.engine.drafters.build import build_drafter
from rollspec.engine.engine import Engine
from rollspec.engine.loader import LoadedModel, load_model
from rollspec.engine.sampling_params import SamplingParams
from rollspec.engine.sequence import Request
from rollspec.models.recipe import full_recipe
from rollspec.rl.mixture import TaskMixture
from rollspec.rl.split import Split
from rollspec.rl.tasks import task_names
from rollspec.rl.template import encode_prompt
from rollspec.rl.vocab import EOS_ID, PAD_ID

MAX_SEQ_LEN = 256
ZOO_DIFFICULTY = full_recipe().difficulty  # what the zoo policy was trained on and RL runs on (configs/tiny.yaml)


@dataclasses.dataclass
class Workload:
    """The same held-out prompts, sampling settings and batch size for every contender."""

    zoo: object
    batch: int
    prompts: list[list[int]]
    temperature: float
    max_new_tokens: int

    @classmethod
    def from_zoo(cls, zoo, *, batch: int, temperature: float, max_new_tokens: int,
                 num_prompts: int | None = None, difficulty: int = ZOO_DIFFICULTY) -> Workload:
        count = num_prompts or max(4 * batch, 24)  # ~12 tokens per response: enough work per timed run
        mixture = TaskMixture({name: 1.0 for name in task_names()}, seed=1234, split=Split.EVAL,
                              difficulty=difficulty)
        prompts = [encode_prompt(ex.prompt) for ex in mixture.take(count)]
        return cls(zoo, batch, prompts, temperature, max_new_tokens)

    @cached_property
    def policy(self) -> LoadedModel:
        return load_model(self.zoo.policy)

    @cached_property
    def hf_policy(self):
        import transformers

        return transformers.AutoModelForCausalLM.from_pretrained(self.zoo.policy).eval()

    @cached_property
    def hf_draft(self):
        import transformers

        return transformers.AutoModelForCausalLM.from_pretrained(self.zoo.draft).eval()

    def engine_config(self) -> EngineConfig:
        return EngineConfig(max_batch_size=self.batch, max_seq_len=MAX_SEQ_LEN, k_max=8)

    def requests(self, seed_offset: int = 0) -> list[Request]:
        """Every prompt once; `seed_offset` shifts the sampling seeds (another pass, other sample paths)."""
        params = [SamplingParams(temperature=self.temperature, max_new_tokens=self.max_new_tokens,
                                 stop_token_ids=(EOS_ID,), seed=1000 + seed_offset + i)
                  for i in range(len(self.prompts))]
        return [Request(request_id=str(i), prompt_ids=tuple(p), params=params[i], group_id=str(i // 4))
                for i, p in enumerate(self.prompts)]


def run_ours(workload: Workload, *, drafter: str | None, k: int) -> dict:
    config = workload.engine_config()
    draft_path = {"draft_model": workload.zoo.draft, "eagle": workload.zoo.eagle}.get(drafter)
    built = build_drafter(drafter, policy=workload.policy, config=config, draft_path=draft_path) if drafter else None
    engine = Engine(workload.policy.model, config, drafter=built, depth=FixedDepth(k))
    requests = workload.requests()
    start = time.perf_counter()
    completions = engine.generate(requests)
    elapsed = time.perf_counter() - start
    tokens = sum(len(c.token_ids) for c in completions)
    verify_steps = sum(c.stats.num_verify_steps for c in completions)
    accepted = sum(c.stats.num_accepted for c in completions)
    return {"tokens_per_s": tokens / elapsed, "tokens": tokens,
            "acceptance_length": (1 + accepted / verify_steps) if verify_steps else None}


def _hf_sampling(workload: Workload) -> dict:
    return dict(do_sample=workload.temperature > 0, temperature=workload.temperature or None, top_k=0, top_p=1.0,
                max_new_tokens=workload.max_new_tokens, eos_token_id=EOS_ID, pad_token_id=PAD_ID)


def _generated_tokens(rows: torch.Tensor) -> int:
    total = 0
    for row in rows.tolist():
        total += row.index(EOS_ID) + 1 if EOS_ID in row else len(row)
    return total


@torch.no_grad()
def run_transformers(workload: Workload) -> dict:
    """Batched `generate` with left padding; only tokens up to each row's EOS count."""
    model = workload.hf_policy
    torch.manual_seed(0)
    tokens, elapsed = 0, 0.0
    for start in range(0, len(workload.prompts), workload.batch):
        chunk = workload.prompts[start: start + workload.batch]
        width = max(len(p) for p in chunk)
        ids = torch.tensor([[PAD_ID] * (width - len(p)) + p for p in chunk])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk])
        began = time.perf_counter()
        out = model.generate(input_ids=ids, attention_mask=mask, **_hf_sampling(workload))
        elapsed += time.perf_counter() - began
        tokens += _generated_tokens(out[:, width:])
    return {"tokens_per_s": tokens / elapsed, "tokens": tokens}


@torch.no_grad()
def run_assisted(workload: Workload) -> dict:
    """Assisted generation (speculative sampling with the same draft model), one prompt at a time."""
    model, draft = workload.hf_policy, workload.hf_draft
    torch.manual_seed(0)
    tokens, elapsed = 0, 0.0
    for prompt in workload.prompts:
        ids = torch.tensor([prompt])
        began = time.perf_counter()
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), assistant_model=draft,
                             **_hf_sampling(workload))
        elapsed += time.perf_counter() - began
        tokens += _generated_tokens(out[:, len(prompt):])
    return {"tokens_per_s": tokens / elapsed, "tokens": tokens}
