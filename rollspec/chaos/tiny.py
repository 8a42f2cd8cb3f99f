"""The run every chaos scenario disturbs: tiny random models written on the fly and a few-step GRPO
config over them, complete in itself (no preset file), so a scenario costs seconds, not minutes."""

from pathlib import Path

from rollspec.models.hf_dir import write_model_dir
from rollspec.models.random_models import random_decoder, tiny_config
from rollspec.rl.tokenizer import save_tokenizer
from rollspec.rl.vocab import VOCAB_SIZE


def tiny_models(root: Path) -> dict[str, Path]:
    """A 2-layer policy and a 1-layer draft model over the task vocabulary (reused if already written)."""
    root.mkdir(parents=True, exist_ok=True)
    paths = {"policy": root / "policy", "draft": root / "draft"}
    if all((p / "config.json").is_file() for p in paths.values()):
        return paths
    save_tokenizer(root / "tokenizer")
    policy = random_decoder(tiny_config(vocab_size=VOCAB_SIZE), seed=1, std=0.05)
    draft = random_decoder(tiny_config(vocab_size=VOCAB_SIZE, num_layers=1, hidden_size=32, num_heads=2,
                                       num_kv_heads=1, intermediate_size=64), seed=2, std=0.05)
    write_model_dir(paths["policy"], policy, tokenizer_dir=root / "tokenizer")
    write_model_dir(paths["draft"], draft, tokenizer_dir=root / "tokenizer")
    return paths


def base_overrides(models: dict[str, Path], runs_root: Path, *, steps: int = 4) -> list[str]:
    """Synchronous GRPO, `steps` steps of 4 groups of 2, a checkpoint every step, short leases (a dead
    consumer's items come back within seconds), a fixed speculation depth (no start-up profiling, so
    a restarted rollout actor is back quickly), a fixed drafter (no draft refresh: a distilled draft
    depends on which samples arrived first; where a scenario turns it on, it refreshes from 4
    trajectories on, so distilled draft versions reach the rollouts within a 4-step run) and a hashed
    reward (rewards.py: the weights move)."""
    return [f"models.policy={models['policy']}", f"models.draft={models['draft']}", f"run.root={runs_root}",
            "run.progress=false", "run.seed=0", "data.difficulty=1", "data.seed=0", f"algorithm.steps={steps}",
            "algorithm.prompts_per_step=4", "algorithm.group_size=2", "algorithm.max_new_tokens=16",
            "algorithm.max_staleness=0", "rollout.num_actors=1", "rollout.max_batch_size=8",
            "rollout.max_seq_len=64", "rollout.drafter=draft_model", "rollout.depth=fixed", "rollout.k=2",
            "reward.num_actors=1", "reward.function=rollspec.chaos.rewards:hashed", "reward.timeout_s=5.0",
            "draft_refresh.enabled=false", "draft_refresh.batch_size=2", "draft_refresh.steps=2",
            "draft_refresh.max_seconds=10", "learner.num_ranks=1", "learner.zero_stage=1", "learner.micro_batch_size=4",
            "learner.lr=1.0e-3", "checkpoint.every_steps=1", "checkpoint.keep_last=2", "transport.lease_s=3.0",
            "ray.num_cpus=8"]
