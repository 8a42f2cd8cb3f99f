"""Frozen specs of the actors and the controller, built by launch/ from the validated user config.

Specs travel to Ray actors as constructor arguments (small, picklable); the actors never see the
pydantic models, YAML or the command line.
"""

import dataclasses
from typing import Literal

from rollspec.actors.rollout_loop import SamplingDefaults
from rollspec.engine.config import EngineConfig
from rollspec.models.config import RefreshConfig
from rollspec.rl.mixture import TaskMixture
from rollspec.rl.split import DEFAULT_RL_FRACTION, Split
from rollspec.scheduler import AdmissionConfig
from rollspec.transport import NO_FAULTS, FaultPlan

DepthMode = Literal["adaptive", "fixed"]
PROMPTS, TRAJECTORIES, SCORED, DRAFT_SAMPLES = "prompts", "trajectories", "scored", "draft_samples"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ProcessSpec:
    """How an actor process is set up: intra-op threads and the environment every Ray process needs."""

    num_threads: int = 1
    env: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RolloutSpec:
    """One rollout actor: which models, how the engine is sized, how deep it speculates, how it samples."""

    policy_path: str
    drafter: str
    draft_path: str | None
    """Draft model directory (drafter draft_model) or EAGLE head directory (eagle); None otherwise."""
    engine: EngineConfig
    depth: DepthMode
    k: int
    """The fixed depth, or the adaptive scheduler's deepest choice."""
    sampling: SamplingDefaults
    group_size: int
    profile_repeats: int = 3
    start_timeout_s: float = 300.0
    process: ProcessSpec = ProcessSpec()
    backend: str = "native"
    """Generation backend: the built-in engine ('native') or vLLM ('vllm', k fixed at start)."""
    faults: FaultPlan = NO_FAULTS
    """Injected message faults on this actor's channels (chaos testing; none by default)."""
    slowdown: float = 1.0
    """Wall-time factor of every engine step (chaos: a straggler); 1 is full speed."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RewardSpec:
    """One reward actor: 'builtin' or a user function 'module:function' with a per-call timeout."""

    function: str
    timeout_s: float
    python_path: tuple[str, ...] = ()
    """Import paths of the driver, added to the actor's, so a function the driver can import imports here."""
    batch_items: int = 16
    process: ProcessSpec = ProcessSpec()
    faults: FaultPlan = NO_FAULTS
    """Injected message faults on this actor's channels (chaos testing; none by default)."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DraftRefreshSpec:
    """The draft-refresh actor: which drafter it distills, how often it publishes a version, and each
    refresh's training budget."""

    drafter: str
    draft_path: str | None
    policy_path: str
    every_policy_versions: int = 1
    distill: RefreshConfig = RefreshConfig()
    process: ProcessSpec = ProcessSpec()
    faults: FaultPlan = NO_FAULTS
    """Injected message faults on its draft publisher, policy subscription and samples consumer (chaos)."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FeedSpec:
    """The learner's intake of scored groups (runs in learner rank 0)."""

    admission: AdmissionConfig
    vocab_size: int
    """The policy's vocabulary: records with other token ids are dropped ('bad_tokens')."""
    drop_truncated: bool = False
    poll_items: int = 256
    faults: FaultPlan = NO_FAULTS
    """Injected message faults on the learner's scored-queue consumer (chaos testing)."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class QueueSpec:
    """Work-queue limits shared by the four queues the controller hosts."""

    capacity: int = 4096
    lease_s: float = 30.0
    max_attempts: int = 5


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ControllerSpec:
    """The step loop: how many steps, what a step consumes, staleness, checkpoints and the prompt source."""

    steps: int
    admission: AdmissionConfig
    task_weights: tuple[tuple[str, float], ...]
    data_seed: int
    difficulty: int
    eval_fraction: float
    sample_seed: int
    rl_fraction: float = DEFAULT_RL_FRACTION
    prompt_split: Literal["rl", "train"] = "rl"
    dataset_size: int = 0
    """Epochs over the split's first dataset_size prompts (0: a fresh prompt per group)."""
    checkpoint_every: int
    """Checkpoint after every this many steps (0: only at the end)."""
    keep_checkpoints: int = 2
    queues: QueueSpec = QueueSpec()
    poll_s: float = 0.02
    train_wait_s: float = 0.5
    """How long one learner call waits for a full batch before reporting back (so drops get replaced)."""
    version_wait_s: float = 300.0

    def prompt_mixture(self) -> TaskMixture:
        """The prompt stream's dataset: the task mixture on the `prompt_split` side of the split."""
        return TaskMixture(dict(self.task_weights), self.data_seed, split=Split(self.prompt_split),
                           difficulty=self.difficulty, eval_fraction=self.eval_fraction,
                           rl_fraction=self.rl_fraction)

    @property
    def prompts_per_step(self) -> int:
        """Prompt groups one learner step trains on."""
        return self.admission.prompts_per_step

    @property
    def group_size(self) -> int:
        """Samples per prompt group."""
        return self.admission.group_size
