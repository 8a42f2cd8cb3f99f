"""The tiny zoo: every artifact loads with the engine and with transformers, the manifest is
complete and true, builds are deterministic, and a matching cached zoo is reused."""

import json

import pytest
import torch
import transformers

from rollspec.engine.config import EngineConfig
from rollspec.engine.drafters.build import build_drafter
from rollspec.engine.loader import load_eagle_head, load_model, load_mtp_heads
from rollspec.models.manifest import MANIFEST_NAME, file_checksums, mismatched_files, read_manifest, summarize
from rollspec.models.recipe import tiny_recipe
from rollspec.models.zoo import ZooDirectoryError, build_zoo, cached_zoo
from rollspec.rl.template import encode_prompt
from rollspec.rl.tokenizer import TOKENIZER_FILES

from .conftest import SEED

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_every_artifact_is_an_hf_directory_with_tokenizer(tiny_zoo):
    for directory in (tiny_zoo.policy, tiny_zoo.draft, tiny_zoo.eagle):
        assert (directory / "config.json").is_file() and (directory / "model.safetensors").is_file()
        assert all((directory / name).is_file() for name in TOKENIZER_FILES)
    assert json.loads((tiny_zoo.eagle / "config.json").read_text())["architectures"] == ["EagleLlamaForCausalLM"]


def test_artifacts_load_with_the_engine_loaders(tiny_zoo):
    recipe = tiny_recipe()
    policy = load_model(tiny_zoo.policy)
    assert policy.config.num_mtp_layers == recipe.num_mtp_layers
    assert policy.config.hidden_size == recipe.policy.hidden_size and policy.config.head_dim == 64
    assert load_model(tiny_zoo.draft).config.num_layers == recipe.draft.num_layers
    assert load_eagle_head(tiny_zoo.eagle, policy).config.hidden_size == policy.config.hidden_size
    assert len(load_mtp_heads(policy).layers) == recipe.num_mtp_layers
    config = EngineConfig(max_batch_size=2, max_seq_len=64)
    for kind, path in (("draft_model", tiny_zoo.draft), ("eagle", tiny_zoo.eagle), ("mtp", None)):
        assert build_drafter(kind, policy=policy, config=config, draft_path=path) is not None


def test_policy_and_draft_match_transformers_logits(tiny_zoo):
    ids = torch.tensor([encode_prompt("addition:12+345") + [10, 11, 12]])
    for directory in (tiny_zoo.policy, tiny_zoo.draft):
        ours = load_model(directory).model
        reference = transformers.AutoModelForCausalLM.from_pretrained(directory).eval()
        with torch.no_grad():
            torch.testing.assert_close(ours.logits(ours(ids)), reference(ids).logits, atol=1e-4, rtol=1e-4)


def test_tokenizer_loads_with_auto_tokenizer(tiny_zoo):
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_zoo.policy)
    assert tokenizer("12+3")["input_ids"] == encode_prompt("12+3")[1:-1]
    assert tokenizer.eos_token == "<eos>"


def test_manifest_is_complete_and_its_checksums_match(tiny_zoo):
    manifest = read_manifest(tiny_zoo.root)
    assert manifest["seed"] == SEED and manifest["recipe_hash"] == tiny_recipe().hash(SEED)
    assert manifest["files"] == file_checksums(tiny_zoo.root)
    assert {"policy/model.safetensors", "draft/model.safetensors", "eagle/model.safetensors"} <= set(manifest["files"])
    assert set(manifest["models"]) == {"policy", "draft", "eagle", "mtp"}
    assert all(m["num_params"] > 0 for m in manifest["models"].values())
    assert [p["name"] for p in manifest["phases"]] == ["policy sft", "draft distill", "eagle head", "mtp heads"]
    phases = {"policy_sft", "teacher_data", "draft_distill", "eagle", "mtp", "save", "measure", "total"}
    assert phases <= set(manifest["wall_s"]) and phases <= set(manifest["cpu_s"])
    for temperature in ("greedy", "temperature_1"):
        assert set(manifest["accuracy"][temperature]) >= {"addition", "reversal", "mean"}
        for kind in ("draft_model", "eagle", "mtp", "ngram"):
            assert manifest["acceptance"][temperature][kind]["acceptance_length"] >= 1.0
    for batch in ("batch_1", "batch_16"):
        assert manifest["cost"][batch]["policy_decode_step_ms"] > 0
        assert manifest["cost"][batch]["policy_over_draft_model"] > 0
    assert "rollspec" in manifest["code_version"]
    assert any(line.startswith("acceptance length at k=4") for line in summarize(manifest))


def test_tampering_is_detected(tiny_zoo, tmp_path):
    import shutil

    copy = tmp_path / "zoo"
    shutil.copytree(tiny_zoo.root, copy)
    assert cached_zoo(copy, tiny_recipe(), SEED) is not None
    (copy / "draft" / "config.json").write_text("{}")
    assert mismatched_files(copy, read_manifest(copy)) == ["draft/config.json"]
    assert cached_zoo(copy, tiny_recipe(), SEED) is None


def test_same_seed_gives_identical_weights(tiny_zoo, tmp_path):
    again = build_zoo(tmp_path / "again", seed=SEED, progress=False, recipe=tiny_recipe())
    for name in ("policy", "draft", "eagle"):
        first = (tiny_zoo.root / name / "model.safetensors").read_bytes()
        assert (again.root / name / "model.safetensors").read_bytes() == first, name


def test_a_matching_cached_zoo_is_not_rebuilt(tiny_zoo):
    before = {p: p.stat().st_mtime_ns for p in tiny_zoo.root.rglob("*")}
    assert build_zoo(tiny_zoo.root, seed=SEED, progress=False, recipe=tiny_recipe()) == tiny_zoo
    assert {p: p.stat().st_mtime_ns for p in tiny_zoo.root.rglob("*")} == before


def test_another_seed_is_a_cache_miss(tiny_zoo):
    assert cached_zoo(tiny_zoo.root, tiny_recipe(), SEED + 1) is None


def test_refuses_to_overwrite_a_directory_that_is_not_a_zoo(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ZooDirectoryError):
        build_zoo(tmp_path / "mine", seed=SEED, progress=False, recipe=tiny_recipe())
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    assert not (tmp_path / "mine" / MANIFEST_NAME).exists()
