"""What the zoo is built from: model sizes, data, steps and optimizer settings, and its hash.

The recipe is the cache key: a zoo on disk is reused only if its manifest records the hash of
the recipe (and seed) being asked for. `RECIPE_VERSION` is bumped whenever the training code
changes what a recipe produces, so old caches are rebuilt rather than silently reused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from rollspec.engine.model_config import ModelConfig
from rollspec.rl.mixture import TaskMixture
from rollspec.rl.split import Split
from rollspec.rl.tasks import task_names
from rollspec.rl.vocab import EOS_ID, VOCAB_SIZE

RECIPE_VERSION = 2
ZOO_TASK_WEIGHTS = {name: 1.0 for name in task_names()}  # every built-in task, equally often


def derive_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed for one purpose (init of a model, a data stream, sampling) from the zoo seed,
    so adding a new consumer of randomness never shifts the others' streams."""
    digest = hashlib.blake2b(f"{seed}/{purpose}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


class RecipeError(ValueError):
    """A recipe field outside its allowed range."""

    def __init__(self, name: str, value: object, expected: str):
        super().__init__(f"recipe field {name} must be {expected}, got {value!r}")
        self.name, self.value, self.expected = name, value, expected


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ModelSize:
    """Shape of one Qwen3 decoder; head_dim 64 so later CPU backends (vLLM) accept it."""

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    head_dim: int = 64

    def config(self, *, num_mtp_layers: int = 0) -> ModelConfig:
        """The decoder config at this size over the task vocabulary, stopping at <eos>."""
        return ModelConfig(model_type="qwen3", vocab_size=VOCAB_SIZE, hidden_size=self.hidden_size,
                           intermediate_size=self.intermediate_size, num_layers=self.num_layers,
                           num_heads=self.num_heads, num_kv_heads=self.num_kv_heads, head_dim=self.head_dim,
                           rms_norm_eps=1e-6, rope_theta=10000.0, max_position_embeddings=1024,
                           tie_word_embeddings=False, qk_norm=True, qkv_bias=False, o_bias=False,
                           num_mtp_layers=num_mtp_layers, eos_token_ids=(EOS_ID,))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Phase:
    """Optimizer schedule of one training phase: AdamW, linear warmup, cosine decay to min_lr."""

    steps: int
    lr: float
    min_lr: float
    warmup_steps: int
    weight_decay: float = 0.0
    grad_clip: float = 1.0

    def __post_init__(self):
        if self.steps < 1:
            raise RecipeError("steps", self.steps, ">= 1")
        if not 0 < self.min_lr <= self.lr:
            raise RecipeError("min_lr", self.min_lr, f"in (0, lr={self.lr}]")
        if not 0 <= self.warmup_steps < self.steps:
            raise RecipeError("warmup_steps", self.warmup_steps, f"in [0, steps={self.steps})")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Recipe:
    """Everything that determines the zoo's weights, apart from the seed."""

    policy: ModelSize
    draft: ModelSize
    num_mtp_layers: int
    difficulty: int
    sft: Phase
    draft_distill: Phase
    eagle: Phase
    mtp: Phase
    sft_batch_size: int
    drafter_batch_size: int  # the drafters' phases share the teacher data, batched once
    num_teacher_references: int  # reference (SFT-style) sequences the drafters learn on
    num_teacher_samples: int  # policy samples at temperature 1 the drafters learn on
    eagle_unroll: int  # EAGLE steps trained on the head's own predicted features
    mtp_depth: int  # drafting depths the MTP heads are trained at (deeper ones reuse the last head)
    eagle_feature_weight: float
    eval_prompts_per_task: int  # held-out prompts per task for the accuracy numbers
    eval_harder_prompts_per_task: int  # greedy, at each difficulty above the zoo's up to the RL default
    eval_acceptance_prompts: int  # held-out prompts (mixture) for each drafter's acceptance length
    eval_k: int
    max_new_tokens: int  # generation budget of samples and evaluation (difficulty 1 references: <= 22)
    num_threads: int = 2

    def __post_init__(self):
        if self.num_mtp_layers < 1 or self.mtp_depth < self.num_mtp_layers:
            raise RecipeError("num_mtp_layers/mtp_depth", (self.num_mtp_layers, self.mtp_depth),
                              "num_mtp_layers >= 1 and mtp_depth >= num_mtp_layers")
        if self.eagle_unroll < 1:
            raise RecipeError("eagle_unroll", self.eagle_unroll, ">= 1")

    def mixture(self, seed: int, split: Split = Split.TRAIN) -> TaskMixture:
        """The task mixture the zoo trains on (TRAIN) and is evaluated on (EVAL)."""
        return TaskMixture(ZOO_TASK_WEIGHTS, derive_seed(seed, "mixture"), split=split, difficulty=self.difficulty)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def hash(self, seed: int) -> str:
        """sha256 of (RECIPE_VERSION, seed, every field): equal hashes mean equal weights."""
        payload = json.dumps({"version": RECIPE_VERSION, "seed": seed, "recipe": self.to_dict()}, sort_keys=True)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def full_recipe() -> Recipe:
    """The zoo `rollspec make-models` builds, sized for about 10 minutes on 2 CPU cores.

    Measured trade-offs behind the numbers: at this budget depth costs accuracy (8 layers x 128
    reached 21% after 1200 SFT steps where 4 layers reached 30%, and 47% at 2400), while width
    does not change the loss per step (4 x 256 tracked 4 x 128) but makes every decode step
    dearer, which is what speculation needs: 4 x 192 decodes at several times a 1-layer 64-wide
    draft's per-token cost. Difficulty 1 is what a policy trained from scratch in minutes
    learns to answer (about 50% held out); at difficulty 3 it stayed at 0% for 1800 steps.
    """
    return Recipe(
        policy=ModelSize(hidden_size=192, num_layers=4, num_heads=3, num_kv_heads=1, intermediate_size=576),
        draft=ModelSize(hidden_size=64, num_layers=1, num_heads=1, num_kv_heads=1, intermediate_size=192),
        num_mtp_layers=2,
        difficulty=1,
        sft=Phase(steps=3000, lr=3e-3, min_lr=1.5e-4, warmup_steps=50, weight_decay=0.1),
        draft_distill=Phase(steps=2500, lr=3e-3, min_lr=1e-4, warmup_steps=30),
        eagle=Phase(steps=1000, lr=3e-3, min_lr=1e-4, warmup_steps=30),
        mtp=Phase(steps=1000, lr=3e-3, min_lr=1e-4, warmup_steps=30),
        sft_batch_size=16,
        drafter_batch_size=32,
        num_teacher_references=1024,
        num_teacher_samples=2048,
        eagle_unroll=3,
        mtp_depth=4,
        eagle_feature_weight=1.0,
        eval_prompts_per_task=40,
        eval_harder_prompts_per_task=8,
        eval_acceptance_prompts=64,
        eval_k=4,
        max_new_tokens=64,
    )


def tiny_recipe() -> Recipe:
    """A few-second recipe for tests: same pipeline, toy sizes and step counts."""
    return Recipe(
        policy=ModelSize(hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=128),
        draft=ModelSize(hidden_size=64, num_layers=1, num_heads=1, num_kv_heads=1, intermediate_size=128),
        num_mtp_layers=2,
        difficulty=1,
        sft=Phase(steps=30, lr=3e-3, min_lr=3e-4, warmup_steps=3),
        draft_distill=Phase(steps=20, lr=3e-3, min_lr=3e-4, warmup_steps=2),
        eagle=Phase(steps=20, lr=3e-3, min_lr=3e-4, warmup_steps=2),
        mtp=Phase(steps=20, lr=3e-3, min_lr=3e-4, warmup_steps=2),
        sft_batch_size=16,
        drafter_batch_size=16,
        num_teacher_references=64,
        num_teacher_samples=32,
        eagle_unroll=2,
        mtp_depth=3,
        eagle_feature_weight=1.0,
        eval_prompts_per_task=4,
        eval_harder_prompts_per_task=1,
        eval_acceptance_prompts=8,
        eval_k=4,
        max_new_tokens=32,
        num_threads=1,
    )
