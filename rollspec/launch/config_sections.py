"""The user-facing config, one pydantic model per component (assembled in config.py).

Every model is frozen and forbids unknown keys; every field has bounds and a docstring.
Cross-field rules that span components live in config.TrainConfig.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rollspec.rl.tasks import MAX_DIFFICULTY, MIN_DIFFICULTY, task_names

ZOO_PREFIX = "zoo:"
ZOO_MODELS = ("policy", "draft", "eagle")
DrafterKind = Literal["none", "draft_model", "eagle", "mtp", "ngram"]


class Section(BaseModel):
    """Base of every config section: immutable, unknown keys rejected, docstrings become descriptions."""

    # strict: YAML already types values, so "4" for an int is a mistake to report, not to coerce.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, use_attribute_docstrings=True)


class RunSection(Section):
    name: str = Field("run", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    """Run name: the run directory is <root>/<name>."""
    root: str = "runs"
    """Directory holding run directories (metrics, resolved config, checkpoints)."""
    seed: int = Field(0, ge=0)
    """Seeds sampling and the learner (the prompt order is data.seed's)."""
    overwrite: bool = False
    """A fresh (not --resume) run into an existing run directory replaces it; otherwise that is an error."""
    progress: bool = True
    """Show the progress bar (per-step lines are printed either way)."""


class ModelsSection(Section):
    policy: str = "zoo:policy"
    """Policy model directory (Hugging Face format), or zoo:policy for the built-in zoo (built if missing)."""
    draft: str = "zoo:draft"
    """Draft model directory for rollout.drafter=draft_model, EAGLE head directory for eagle (zoo:eagle);
    unused by mtp, ngram and none."""

    @field_validator("policy", "draft")
    @classmethod
    def _known_zoo_name(cls, value: str) -> str:
        if value.startswith(ZOO_PREFIX) and value[len(ZOO_PREFIX):] not in ZOO_MODELS:
            raise ValueError(f"unknown zoo model {value!r}; expected one of {[ZOO_PREFIX + m for m in ZOO_MODELS]}")
        return value


class DataSection(Section):
    tasks: dict[str, float] = Field(default_factory=lambda: {name: 1.0 for name in task_names()})
    """Task mixture weights by built-in task name."""
    difficulty: int = Field(1, ge=MIN_DIFFICULTY, le=MAX_DIFFICULTY)
    """Difficulty of every task's prompts. 1 is what the zoo policy was trained on (it answers about
    two thirds at temperature 1, so GRPO groups carry a reward signal); at 2-3 it answers almost none."""
    seed: int = Field(0, ge=0)
    """Seed of the prompt stream (prompt i is a pure function of seed and i)."""
    eval_fraction: float = Field(0.05, gt=0.0, lt=1.0)
    """Share of prompt space held out for evaluation (never trained on)."""
    rl_fraction: float = Field(0.05, gt=0.0, lt=1.0)
    """Share of prompt space GRPO draws from by default, disjoint from the held-out share and from the
    prompts the zoo policy was SFT'd on (hash regions, see rollspec/rl/split.py)."""
    prompt_split: Literal["rl", "train"] = "rl"
    """Where the training prompts come from: `rl` (a share of prompt space the zoo policy never saw) or
    `train` (the prompts the zoo policy was SFT'd on, many of them memorized)."""
    dataset_size: int = Field(0, ge=0, le=10_000_000)
    """Prompts in the training set: the run makes epochs over the split's first dataset_size prompts,
    each epoch shuffled (0: a fresh prompt for every group, no repeats)."""
    heldout_prompts: int = Field(0, ge=0, le=100_000)
    """Held-out prompts the driver scores with the starting and the final weights (0: skip; the tiny
    preset uses 100: the per-step training reward moves with each step's prompts as much as with RL)."""
    heldout_samples: int = Field(4, ge=1, le=1024)
    """Samples per held-out prompt, at the run's temperature."""

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(task_names()))
        if unknown:
            raise ValueError(f"unknown tasks {unknown}; expected some of {list(task_names())}")
        if any(w < 0 for w in value.values()) or not any(w > 0 for w in value.values()):
            raise ValueError(f"weights must be >= 0 with at least one > 0, got {value}")
        return value

    @model_validator(mode="after")
    def _room_for_train(self) -> "DataSection":
        if self.eval_fraction + self.rl_fraction >= 1.0:
            raise ValueError(f"eval_fraction + rl_fraction must be < 1, got {self.eval_fraction} + {self.rl_fraction}")
        return self


class AlgorithmSection(Section):
    steps: int = Field(20, ge=1, le=1_000_000)
    """Learner steps (one optimizer step and one new policy version each)."""
    prompts_per_step: int = Field(8, ge=1, le=65536)
    """Prompt groups per learner step."""
    group_size: int = Field(4, ge=2, le=1024)
    """Samples per prompt (GRPO group); advantages compare samples of one prompt, so at least 2."""
    max_staleness: int = Field(0, ge=0, le=64)
    """0: synchronous (generate, score, train, publish). s >= 1: rollouts continue while the learner
    trains, and every trajectory trains at most s versions after the policy that generated it."""
    temperature: float = Field(1.0, gt=0.0, le=10.0)
    """Sampling temperature of rollouts (the learner's log-probs use the same)."""
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    """Nucleus sampling; 1.0 keeps the whole distribution (what the loss assumes exactly)."""
    max_new_tokens: int = Field(128, ge=1, le=65536)
    """Completion budget per sample."""
    drop_truncated: bool = False
    """Drop samples that hit max_new_tokens (reason 'length') instead of training on them."""
    scale_by_std: bool = True
    """GRPO advantages (r - mean) / std; false for Dr. GRPO's r - mean."""
    clip_eps_low: float = Field(0.2, ge=0.0, lt=1.0)
    """PPO clip below 1."""
    clip_eps_high: float = Field(0.28, ge=0.0, le=10.0)
    """PPO clip above 1."""
    tis_cap: float = Field(2.0, ge=1.0, le=100.0)
    """Truncation of the importance weight against the (stale) behaviour policy."""
    kl_coef: float = Field(0.0, ge=0.0, le=10.0)
    """KL penalty to the initial policy (0: none, no reference model loaded)."""
    decoupled: bool = True
    """Decoupled (proximal) objective that corrects staleness with a truncated importance weight."""


class RolloutSection(Section):
    num_actors: int = Field(1, ge=1, le=1024)
    """Rollout actors (each one engine)."""
    cpus_per_actor: float = Field(1.0, gt=0.0, le=1024.0)
    """Ray CPUs reserved per rollout actor (fractions share cores)."""
    num_threads: int = Field(1, ge=1, le=256)
    """torch intra-op threads per rollout actor."""
    max_batch_size: int = Field(32, ge=1, le=4096)
    """Sequences generating at once per engine (KV cache rows)."""
    max_seq_len: int = Field(256, ge=8, le=1 << 20)
    """Prompt plus completion tokens per sequence; longer prompts are dropped with reason 'length'."""
    drafter: DrafterKind = "draft_model"
    """Speculative drafter: draft_model, eagle, mtp (heads in the policy checkpoint), ngram, or none."""
    backend: Literal["native", "vllm"] = "native"
    """Generation backend: the built-in engine, or vLLM (every drafter but mtp; k fixed at engine start,
    depth 'adaptive' then means 'fixed'). vLLM is imported only when chosen."""
    depth: Literal["adaptive", "fixed"] = "adaptive"
    """adaptive: the scheduler picks k in [0, k] every step from live acceptance and profiled costs;
    fixed: always k."""
    k: int = Field(4, ge=0, le=32)
    """Draft depth (fixed), or the deepest the adaptive scheduler may choose."""
    profile_repeats: int = Field(3, ge=1, le=100)
    """Timed steps per grid point of the start-up cost profile (adaptive depth only)."""
    max_restarts: int = Field(2, ge=0, le=100)
    """Ray restarts of a crashed rollout actor (its leased prompts go to the others meanwhile)."""


class RewardSection(Section):
    num_actors: int = Field(1, ge=1, le=1024)
    """Reward actors."""
    cpus_per_actor: float = Field(0.5, gt=0.0, le=1024.0)
    """Ray CPUs reserved per reward actor."""
    function: str = "builtin"
    """'builtin' (the task's verifiable reward) or 'package.module:function' taking (prompt, response)
    strings and returning a number."""
    timeout_s: float = Field(10.0, gt=0.0, le=3600.0)
    """Per-call limit for a user reward function; a timeout is a reward error, not a crash."""
    max_restarts: int = Field(2, ge=0, le=100)
    """Ray restarts of a crashed reward actor."""


class LearnerSection(Section):
    num_ranks: int = Field(1, ge=1, le=1024)
    """Data-parallel learner ranks (DeepSpeed)."""
    cpus_per_rank: float = Field(1.0, gt=0.0, le=1024.0)
    """Ray CPUs per rank; its whole part (at least 1) is the rank's torch thread count."""
    zero_stage: Literal[1, 2, 3] = 2
    """DeepSpeed ZeRO stage."""
    lr: float = Field(1e-5, gt=0.0, le=1.0)
    """AdamW learning rate."""
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    """AdamW weight decay."""
    grad_clip: float = Field(1.0, gt=0.0)
    """Max global gradient norm."""
    micro_batch_size: int = Field(8, ge=1, le=65536)
    """Sequences per forward/backward on one rank (gradients accumulate to one step per batch)."""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """Training precision (master weights stay fp32)."""


class DraftRefreshSection(Section):
    enabled: bool = True
    """Run the draft-refresh actor (drafters with weights only); it publishes draft versions."""
    cpus: float = Field(0.25, gt=0.0, le=1024.0)
    """Ray CPUs reserved for it."""
    every_policy_versions: int = Field(1, ge=1, le=1_000_000)
    """Publish a draft version after this many new policy versions."""
    steps: int = Field(16, ge=1, le=1_000_000)
    """AdamW steps of one refresh (distillation to the newest policy on recent trajectories)."""
    batch_size: int = Field(32, ge=1, le=65536)
    """Trajectories per distillation step (the newest batch is held out to check each refresh)."""
    lr: float = Field(3e-4, gt=0.0, le=1.0)
    """Distillation learning rate (the optimizer state carries over between refreshes; 1e-3 made the
    zoo draft worse on held-out trajectories)."""
    max_seconds: float = Field(60.0, gt=0.0)
    """Compute budget of one refresh: training stops after this long and the result is published."""
    buffer_sequences: int = Field(512, ge=2, le=1 << 20)
    """Most recent trajectories kept to train on."""


class CheckpointSection(Section):
    enabled: bool = True
    """Write checkpoints (learner DeepSpeed state + controller state)."""
    every_steps: int = Field(10, ge=1, le=1_000_000)
    """Checkpoint after every this many steps, and after the last step."""
    keep_last: int = Field(2, ge=1, le=1000)
    """Complete checkpoints kept; older ones are deleted once a newer one is complete."""


class RaySection(Section):
    address: str = "local"
    """'local': start a private Ray for this run (the embedded default); 'auto' or host:port: join
    that cluster (what `ray job submit` does; RAY_ADDRESS in the environment also means join)."""
    num_cpus: int = Field(8, ge=1, le=1 << 20)
    """Logical CPUs of the local Ray (fractional actors share the machine's cores)."""
    include_dashboard: bool = False
    """Start the Ray dashboard (and its job server) with the local Ray, on dashboard_host."""
    dashboard_host: str = Field("127.0.0.1", min_length=1)
    """Where the local Ray's dashboard and job server listen. Keep 127.0.0.1 and reach them over an
    SSH tunnel (README, Security): they run jobs with this user's rights and have no authentication."""
    temp_root: str = "/tmp/rollspec-ray"
    """Parent of the local Ray's per-run temp dir (kept short: Ray puts unix sockets in it)."""


class TransportSection(Section):
    queue_capacity: int = Field(4096, ge=16, le=1 << 24)
    """Items each broker-hosted queue holds (back-pressure beyond)."""
    lease_s: float = Field(30.0, gt=0.0, le=86400.0)
    """A consumer silent this long loses its leased items to others."""
    max_attempts: int = Field(5, ge=1, le=1000)
    """Deliveries of one item before the queue drops it (reason 'max_attempts')."""


class ChaosSection(Section):
    """Fault injection for `rollspec chaos` and resilience tests; everything is off by default."""

    seed: int = Field(0, ge=0)
    """Seed of every injected fault (each endpoint draws its own stream from it)."""
    drop: float = Field(0.0, ge=0.0, le=0.5)
    """Probability that an outbound ZeroMQ message on any channel is dropped."""
    duplicate: float = Field(0.0, ge=0.0, le=0.5)
    """Probability that an outbound message is sent twice."""
    delay: float = Field(0.0, ge=0.0, le=1.0)
    """Probability that an outbound message is held back up to max_delay_s."""
    reorder: float = Field(0.0, ge=0.0, le=1.0)
    """Probability that an outbound message is sent after the next one."""
    corrupt: float = Field(0.0, ge=0.0, le=0.5)
    """Probability that one bit of an outbound message's payload is flipped."""
    max_delay_s: float = Field(0.02, ge=0.0, le=5.0)
    """Longest injected delay."""
    slow_rollouts: int = Field(0, ge=0, le=1024)
    """The first this many rollout actors run `slowdown` times slower (a straggler)."""
    slowdown: float = Field(1.0, ge=1.0, le=1000.0)
    """Wall-time factor of a slowed rollout actor's engine steps."""


class SecuritySection(Section):
    curve: Literal["auto", "on", "off"] = "auto"
    """CURVE (encryption + authentication with the run's keys) on every ZeroMQ channel. auto: on for
    any channel bound to or reached over a non-loopback address; on: everywhere, loopback too; off:
    never (a warning for non-loopback binds; anyone who reaches a channel can then use it)."""
    sign_weights: bool = True
    """Authenticate weight versions end to end (HMAC-SHA256 with a per-run key over the manifest and
    each chunk's SHA-256): rollout actors apply only versions from this run's publishers."""

    @field_validator("curve", mode="before")
    @classmethod
    def _bare_on_off(cls, value: object) -> object:
        """YAML 1.1 (and so `security.curve=on` on the command line) reads a bare on / off as a bool."""
        return ("on" if value else "off") if isinstance(value, bool) else value
