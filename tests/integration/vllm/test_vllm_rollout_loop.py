"""The rollout loop runs the same on either backend: over in-process queues, the vLLM generator
and the native engine turn the same prompt groups into the same records (greedy: same tokens),
each carrying token ids, the policy's logprobs, versions and per-position acceptance; new policy
and draft weights are swapped between generations and recorded; weights that do not fit are
refused once and counted."""

import dataclasses

import pytest

from rollspec.actors.config import PROMPTS, TRAJECTORIES
from rollspec.actors.messages import PromptGroup
from rollspec.actors.rollout_loop import RolloutLoop, SamplingDefaults
from rollspec.backends.drafter_spec import DrafterSpec
from rollspec.backends.factory import make_generator
from rollspec.engine.config import EngineConfig
from rollspec.engine.loader import read_safetensors
from rollspec.models.hf_dir import write_model_dir
from rollspec.models.random_models import random_decoder, tiny_config
from rollspec.rl.vocab import EOS_ID, VOCAB_SIZE
from rollspec.transport import InProcBroadcast, InProcQueue, QueueConfig

from .conftest import noisy_copy

pytestmark = [pytest.mark.slow, pytest.mark.vllm]
CFG = tiny_config(vocab_size=VOCAB_SIZE, hidden_size=128, intermediate_size=256, num_heads=2, num_kv_heads=1,
                  head_dim=64)
CONFIG = EngineConfig(max_batch_size=8, max_seq_len=48, k_max=3)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("loop-models")
    out = {}
    for v in (0, 1):
        policy = random_decoder(CFG, seed=50 + v, std=0.3)
        out[f"policy{v}"] = write_model_dir(root / f"policy{v}", policy)
        out[f"draft{v}"] = write_model_dir(root / f"draft{v}", noisy_copy(policy, seed=60 + v, std=0.05))
    return out


def _rig(backend, dirs):
    generator = make_generator(backend, policy_path=dirs["policy0"], config=CONFIG,
                               drafter=DrafterSpec(kind="draft_model", path=str(dirs["draft0"]), k=3))
    prompts, trajectories = InProcQueue(QueueConfig(name=PROMPTS)), InProcQueue(QueueConfig(name=TRAJECTORIES))
    policy_weights, draft_weights = InProcBroadcast(), InProcBroadcast()
    loop = RolloutLoop(generator, prompts=prompts.receiver(), trajectories=trajectories.sender(),
                       sampling=SamplingDefaults(temperature=0.0, max_new_tokens=16, stop_token_ids=(EOS_ID,)),
                       name=backend, group_size=2, policy_weights=policy_weights.sink(),
                       draft_weights=draft_weights.sink())
    return dataclasses.make_dataclass("Rig", ["loop", "generator", "prompts", "out", "policy_weights", "draft_weights"])(
        loop, generator, prompts.sender(), trajectories.receiver(), policy_weights, draft_weights)


def _group(index):
    return PromptGroup(prompt_id=f"p{index}", prompt_index=index, token_ids=[1] + [10 + index] * 5 + [3],
                       group_size=2, policy_version=0, seed=100 * index, issued_at=1.0)


def _run(rig, num_records):
    records = []
    for _ in range(2000):
        rig.loop.run_once(idle_wait_s=0.0)
        records += [d.item for d in rig.out.get_batch(1000, timeout_s=0.0)]
        if len(records) >= num_records and not rig.generator.has_unfinished():
            break
    return sorted(records, key=lambda r: r.msg_id)


def _phase(rig, dirs):
    """Three groups at (0, 0); new weights (1, 1) and two groups; a policy v2 that does not fit and one group."""
    for i in range(3):
        rig.prompts.put(_group(i), msg_id=f"p{i}")
    first = _run(rig, 6)
    rig.policy_weights.publish(1, read_safetensors(dirs["policy1"]))
    rig.draft_weights.publish(1, read_safetensors(dirs["draft1"]))
    for i in range(3, 5):
        rig.prompts.put(_group(i), msg_id=f"p{i}")
    second = _run(rig, 4)
    rig.policy_weights.publish(2, {"model.embed_tokens.weight": read_safetensors(dirs["policy1"])
                                   ["model.embed_tokens.weight"][:3]})  # does not fit: refused, counted
    rig.prompts.put(_group(5), msg_id="p5")
    return first + second + _run(rig, 2)


def test_rollout_loop_gives_the_same_records_on_both_backends(dirs):
    native = _phase(_rig("native", dirs), dirs)
    vllm_rig = _rig("vllm", dirs)
    try:
        theirs = _phase(vllm_rig, dirs)
        stats = vllm_rig.loop.stats
    finally:
        vllm_rig.generator.close()
    assert [r.msg_id for r in theirs] == [r.msg_id for r in native]
    for ours, other in zip(native, theirs):
        assert other.token_ids == ours.token_ids and other.finish_reason == ours.finish_reason
        assert (other.policy_version, other.draft_version) == (ours.policy_version, ours.draft_version)
        assert len(other.logprobs) == len(other.token_ids) and other.num_verify_steps > 0
        assert len(other.accepted_per_position) == 3 and sum(other.proposed_per_position) > 0
    assert {(r.policy_version, r.draft_version) for r in theirs} == {(0, 0), (1, 1)}
    assert stats.num_policy_swaps == 1 and stats.num_draft_swaps == 1 and stats.num_rejected_weights == 1
