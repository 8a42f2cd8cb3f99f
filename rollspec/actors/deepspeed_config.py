"""LearnerConfig -> the DeepSpeed config dict passed to `deepspeed.initialize`."""

from __future__ import annotations

import math

from rollspec.actors.learner_config import LearnerConfig

NEVER_PRINT = 1 << 30
"""steps_per_print: DeepSpeed's own progress lines would interleave with every rank's log."""


def deepspeed_config(config: LearnerConfig) -> dict:
    """ZeRO stage, precision, clipping and batch geometry for `config.num_ranks` ranks.

    gradient_accumulation_steps is 1 on purpose: the learner owns the accumulation boundary
    (`set_gradient_accumulation_boundary` before each micro-batch, one `step()` per batch), so a
    batch may need any number of micro-batches, and DeepSpeed never rescales the loss by a fixed
    accumulation count (the loss normalizer already makes micro-batch gradients add up; see
    `rl.trajectory_batch`). The optimizer is the client's (torch AdamW), hence
    zero_allow_untested_optimizer. fp32 unless bf16 is asked for; master weights stay fp32.
    """
    zero: dict = {
        "stage": config.zero_stage,
        # Overlap needs a side stream; on CPU it buys nothing and only stage 2 supports it well.
        "overlap_comm": False,
        "contiguous_gradients": config.zero_stage >= 2,
    }
    if config.zero_stage == 3:
        # Without these, ZeRO-3 keeps every parameter below ~100k elements replicated: a small
        # model would not be sharded at all.
        zero["stage3_param_persistence_threshold"] = 0
        zero["stage3_model_persistence_threshold"] = 0
    return {
        "train_micro_batch_size_per_gpu": config.micro_batch_size,
        "gradient_accumulation_steps": 1,
        "train_batch_size": config.micro_batch_size * config.num_ranks,
        "gradient_clipping": 0.0 if math.isinf(config.grad_clip) else config.grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": config.dtype == "bfloat16"},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": NEVER_PRINT,
        "wall_clock_breakdown": False,
    }
