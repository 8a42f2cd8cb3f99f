"""The vLLM backend's pure parts, without starting vLLM: drafter mapping and its errors, the
missing-install error, lazy import, request / output conversion, weight-update validation, and
the factory's native path behind the Generator protocol."""

import json
import subprocess
import sys
import types

import pytest
import torch

from rollspec.backends.drafter_spec import (
    MTP_UNSUPPORTED,
    DrafterSpec,
    depth_schedule,
    speculative_config,
)
from rollspec.backends.eagle3_head import write_eagle3_dir
from rollspec.backends.errors import BackendUnavailableError, UnsupportedDrafterError
from rollspec.backends.factory import make_generator
from rollspec.backends.vllm_requests import sampling_kwargs, spec_stats, to_completion
from rollspec.backends.weight_manifest import WeightManifest
from rollspec.engine.config import EngineConfig
from rollspec.engine.engine import Engine
from rollspec.engine.errors import WeightUpdateError
from rollspec.engine.generator import Generator
from rollspec.engine.sampling_params import SamplingParams
from rollspec.engine.sequence import Request
from rollspec.models.hf_dir import write_eagle_dir, write_model_dir
from rollspec.models.random_models import random_decoder, random_eagle_head, tiny_config

CFG = tiny_config(vocab_size=40, hidden_size=128, intermediate_size=256, num_heads=2, num_kv_heads=1, head_dim=64)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("backend-models")
    return {"policy": write_model_dir(root / "policy", random_decoder(CFG, seed=0)),
            "eagle": write_eagle_dir(root / "eagle", random_eagle_head(CFG, seed=1)),
            "eagle3": write_eagle3_dir(root / "eagle3", CFG, aux_layer_ids=(0, 1, 1), seed=2)}


def test_each_supported_drafter_maps_to_a_speculative_config(dirs):
    assert speculative_config(DrafterSpec()) is None
    assert speculative_config(DrafterSpec(kind="eagle", path=str(dirs["eagle"]), k=0)) is None
    assert speculative_config(DrafterSpec(kind="ngram", k=3, ngram_min=1, ngram_max=4)) == {
        "method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_min": 1, "prompt_lookup_max": 4}
    assert speculative_config(DrafterSpec(kind="draft_model", path=str(dirs["policy"]), k=2)) == {
        "method": "draft_model", "num_speculative_tokens": 2, "model": str(dirs["policy"]),
        "draft_sample_method": "probabilistic"}
    for kind in ("eagle", "eagle3"):
        assert speculative_config(DrafterSpec(kind=kind, path=str(dirs[kind]), k=3)) == {
            "method": kind, "num_speculative_tokens": 3, "model": str(dirs[kind])}


def test_unsupported_drafters_say_why(dirs):
    with pytest.raises(UnsupportedDrafterError, match="cannot run our MTP heads"):
        speculative_config(DrafterSpec(kind="mtp", k=2))
    with pytest.raises(UnsupportedDrafterError, match="arctic-inference"):
        speculative_config(DrafterSpec(kind="suffix", k=2))
    with pytest.raises(UnsupportedDrafterError, match="'medusa' is not supported"):
        speculative_config(DrafterSpec(kind="medusa", k=2))
    with pytest.raises(UnsupportedDrafterError, match="needs a directory"):
        speculative_config(DrafterSpec(kind="eagle", k=2))
    with pytest.raises(UnsupportedDrafterError, match="EagleLlamaForCausalLM"):
        speculative_config(DrafterSpec(kind="eagle", path=str(dirs["policy"]), k=2))
    with pytest.raises(UnsupportedDrafterError, match="eagle_aux_hidden_state_layer_ids"):
        speculative_config(DrafterSpec(kind="eagle3", path=str(dirs["eagle"]), k=2))
    assert "MLP-only block" in MTP_UNSUPPORTED and "Unsupported speculative method" in MTP_UNSUPPORTED


def test_depth_schedule_becomes_vllm_ranges(dirs):
    schedule = depth_schedule(lambda b: 4 if b <= 3 else (2 if b <= 10 else 0), 16)
    assert schedule == ((1, 3, 4), (4, 10, 2), (11, 16, 0))
    config = speculative_config(DrafterSpec(kind="eagle", path=str(dirs["eagle"]), k=4, schedule=schedule))
    assert config["num_speculative_tokens"] == 4
    assert config["num_speculative_tokens_per_batch_size"] == [[1, 3, 4], [4, 10, 2], [11, 16, 0]]
    assert speculative_config(DrafterSpec(kind="ngram", k=4, schedule=((1, 16, 0),))) is None


def test_missing_vllm_is_a_clear_error(monkeypatch, dirs):
    from rollspec.backends import vllm_backend

    monkeypatch.setitem(sys.modules, "vllm", None)  # what `import vllm` sees when it is not installed
    with pytest.raises(BackendUnavailableError, match="needs the vllm package.*scripts/setup.sh"):
        vllm_backend.VllmGenerator(dirs["policy"], EngineConfig())
    with pytest.raises(BackendUnavailableError):
        make_generator("vllm", policy_path=dirs["policy"], config=EngineConfig())


def test_unsupported_drafter_fails_before_vllm_is_imported(monkeypatch, dirs):
    from rollspec.backends import vllm_backend

    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(UnsupportedDrafterError, match="MTP"):
        vllm_backend.VllmGenerator(dirs["policy"], EngineConfig(), drafter=DrafterSpec(kind="mtp", k=2))


def test_backend_modules_import_vllm_lazily():
    code = ("import sys, rollspec.backends.factory, rollspec.backends.vllm_backend, rollspec.engine.engine; "
            "print('vllm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_native_factory_builds_an_engine_behind_the_generator_protocol(dirs):
    config = EngineConfig(max_batch_size=4, max_seq_len=32, k_max=3)
    engine = make_generator("native", policy_path=dirs["policy"], config=config,
                            drafter=DrafterSpec(kind="eagle", path=str(dirs["eagle"]), k=3), draft_version=2)
    assert isinstance(engine, Engine) and isinstance(engine, Generator)
    assert engine.draft_version == 2 and engine.max_batch_size == 4
    with pytest.raises(ValueError, match="unknown rollout backend"):
        make_generator("tgi", policy_path=dirs["policy"], config=config)
    with pytest.raises(UnsupportedDrafterError, match="eagle3"):
        make_generator("native", policy_path=dirs["policy"], config=config, drafter=DrafterSpec(kind="eagle3"))


def test_request_and_output_conversion():
    request = Request(request_id="a", prompt_ids=(1, 2), params=SamplingParams(temperature=0.7, top_k=5, top_p=0.9,
                      max_new_tokens=6, stop_token_ids=(3,)))
    kwargs = sampling_kwargs(request, seed=17)
    assert kwargs["seed"] == 17 and kwargs["ignore_eos"] and kwargs["stop_token_ids"] == [3] and kwargs["logprobs"] == 0
    metrics = types.SimpleNamespace(num_spec_tokens=3, per_step_drafted=[3, 3, 2], per_step_accepted=[3, 0, 1])
    stats = spec_stats(metrics, num_tokens=9, k_max=4)
    assert stats.drafted_per_position == (3, 3, 2, 0) and stats.accepted_per_position == (2, 1, 1, 0)
    assert stats.num_verify_steps == 3 and stats.num_decode_steps == 9 - 1 - (3 + 4)
    assert stats.acceptance_length == 1 + 4 / 3
    assert spec_stats(None, num_tokens=5, k_max=2).num_decode_steps == 4
    entry = {4: types.SimpleNamespace(logprob=-0.5)}, {3: types.SimpleNamespace(logprob=-1.5)}
    output = types.SimpleNamespace(outputs=[types.SimpleNamespace(token_ids=[4, 3], logprobs=list(entry),
                                                                  finish_reason="stop", spec_decode_metrics=None)])
    completion = to_completion(request, output, k_max=2, policy_version=3, draft_version=1)
    assert completion.token_ids == (4, 3) and completion.logprobs == (-0.5, -1.5) and completion.finish_reason == "stop"
    assert (completion.policy_version, completion.draft_version) == (3, 1)


def test_weight_manifest_rejects_wrong_names_shapes_and_kinds(dirs):
    manifest = WeightManifest.from_dir(dirs["eagle"], "draft")
    good = {name: torch.zeros(shape) for name, (shape, _) in manifest.shapes.items()}
    manifest.check(good, 1)
    cases = {"unexpected": {**good, "lm_head.weight": torch.zeros(2)},
             "missing": {n: t for n, t in good.items() if n != "fc.weight"},
             "wrong shapes": {**good, "fc.weight": torch.zeros(2, 2)},
             "wrong dtype kind": {**good, "fc.weight": torch.zeros(good["fc.weight"].shape, dtype=torch.long)}}
    for what, weights in cases.items():
        with pytest.raises(WeightUpdateError, match=f"draft version 1 rejected.*{what} \\['"):
            manifest.check(weights, 1)
    assert json.loads((dirs["eagle"] / "config.json").read_text())["architectures"] == ["EagleLlamaForCausalLM"]


def test_schedule_from_the_depth_scheduler_model():
    from rollspec.backends.drafter_spec import schedule_from_depth_scheduler
    from rollspec.scheduler import CostModel, DepthConfig, DepthMode, DepthScheduler

    # Verifying costs little more than decoding at small batch and a lot at large batch.
    target = {(b, q): 0.01 * (1 + (b / 8) * (q - 1)) for b in (1, 4, 16, 64) for q in range(1, 6)}
    cost = CostModel.from_profile(target, {b: 0.001 * b for b in (1, 4, 16, 64)})
    scheduler = DepthScheduler(DepthConfig(k_max=4, mode=DepthMode.ADAPTIVE), cost)
    schedule = schedule_from_depth_scheduler(scheduler, 64)
    assert schedule[0][0] == 1 and schedule[-1][1] == 64
    ks = [k for _, _, k in schedule]
    assert ks[0] > 0 and ks[-1] == 0 and ks == sorted(ks, reverse=True)  # deep at small batch, off at large


def test_policy_with_mtp_heads_is_shown_to_vllm_without_them(tmp_path, dirs):
    import dataclasses

    from rollspec.backends.weight_manifest import decoder_only_dir
    from rollspec.engine.loader import read_safetensors
    from rollspec.models.random_models import random_mtp_heads

    with_mtp = dataclasses.replace(CFG, num_mtp_layers=1)
    heads = random_mtp_heads(with_mtp, num_layers=1, seed=3)
    policy = write_model_dir(tmp_path / "policy", random_decoder(CFG, seed=0), extra_weights=heads.checkpoint_weights(),
                             config=with_mtp)
    view = decoder_only_dir(policy, tmp_path / "staging", ("mtp.",))
    assert view != policy and not any(n.startswith("mtp.") for n in read_safetensors(view))
    assert set(read_safetensors(view)) == {n for n in read_safetensors(policy) if not n.startswith("mtp.")}
    assert "num_nextn_predict_layers" not in json.loads((view / "config.json").read_text())
    assert decoder_only_dir(dirs["policy"], tmp_path / "staging2", ("mtp.",)) == dirs["policy"]
