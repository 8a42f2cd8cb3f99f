"""Our decoder against transformers, the numerical oracle, for every supported architecture."""

import pytest
import torch
import transformers

from rollspec.engine.errors import ModelDirectoryError, UnsupportedArchitectureError
from rollspec.engine.kv_cache import AttentionBatch
from rollspec.engine.loader import load_model
from rollspec.models.hf_dir import write_model_dir

ARCHS = {
    "qwen3": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM, {}),
    "qwen3-tied": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM, {"tie_word_embeddings": True}),
    "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM, {}),
    "llama-bias": (transformers.LlamaConfig, transformers.LlamaForCausalLM, {"attention_bias": True}),
    "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM, {}),
}


def _hf_model(arch: str, tmp_path):
    config_cls, model_cls, extra = ARCHS[arch]
    config = config_cls(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=256,
                        initializer_range=0.2, rope_theta=1000.0, **extra)
    torch.manual_seed(0)
    model = model_cls(config).eval()
    with torch.no_grad():  # make every weight matter, including biases and norms
        for name, param in model.named_parameters():
            if name.endswith("bias") or name.endswith("norm.weight"):
                param.add_(0.3 * torch.randn_like(param))
    model.save_pretrained(tmp_path / arch)
    return model


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_logits_match_transformers(arch, tmp_path):
    reference = _hf_model(arch, tmp_path)
    ours = load_model(tmp_path / arch).model
    ids = torch.randint(0, 97, (3, 21), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(ids).logits
        got = ours.logits(ours(ids))
    torch.testing.assert_close(got, expected, atol=2e-4, rtol=2e-4)


@pytest.mark.parametrize("arch", ["qwen3", "llama-bias"])
def test_cached_ragged_decoding_matches_full_forward(arch, tmp_path):
    _hf_model(arch, tmp_path)
    model = load_model(tmp_path / arch).model
    ids = torch.randint(0, 97, (3, 20), generator=torch.Generator().manual_seed(2))
    full = model.logits(model(ids))
    cache = model.new_cache(num_slots=4, max_len=32)
    prompt_lens = [5, 9, 7]  # ragged prefill, right-padded to 9
    batch = AttentionBatch.build(row_start=0, cache_lens=[0, 0, 0], num_tokens=9, max_len=32, device=ids.device,
                                 dtype=torch.float32)
    prefill = model.logits(model(ids[:, :9], cache=cache, batch=batch))
    for b, n in enumerate(prompt_lens):
        torch.testing.assert_close(prefill[b, :n], full[b, :n], atol=1e-4, rtol=1e-4)
    lens = list(prompt_lens)
    for step in (1, 3, 2):  # decode, then verify-shaped steps of several tokens
        tokens = torch.stack([ids[b, lens[b]: lens[b] + step] for b in range(3)])
        batch = AttentionBatch.build(row_start=0, cache_lens=lens, num_tokens=step, max_len=32, device=ids.device,
                                     dtype=torch.float32)
        out = model.logits(model(tokens, cache=cache, batch=batch))
        for b in range(3):
            torch.testing.assert_close(out[b], full[b, lens[b]: lens[b] + step], atol=1e-4, rtol=1e-4)
        lens = [n + step for n in lens]


def test_written_directory_loads_in_transformers(tmp_path):
    reference = _hf_model("qwen3", tmp_path)
    ours = load_model(tmp_path / "qwen3").model
    write_model_dir(tmp_path / "rewritten", ours)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "rewritten").eval()
    ids = torch.randint(0, 97, (2, 11), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, reference(ids).logits, atol=1e-5, rtol=1e-5)


def test_bad_directories_get_clear_errors(tmp_path):
    with pytest.raises(ModelDirectoryError, match="does not exist"):
        load_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelDirectoryError, match="no config.json"):
        load_model(tmp_path / "empty")
    (tmp_path / "badjson").mkdir()
    (tmp_path / "badjson" / "config.json").write_text("{not json")
    with pytest.raises(ModelDirectoryError, match="not valid JSON"):
        load_model(tmp_path / "badjson")
    _hf_model("qwen3", tmp_path)
    (tmp_path / "qwen3" / "model.safetensors").write_bytes(b"truncated")
    with pytest.raises(ModelDirectoryError, match="cannot read weights"):
        load_model(tmp_path / "qwen3")


def test_unsupported_architecture_is_named(tmp_path):
    (tmp_path / "gpt2").mkdir()
    (tmp_path / "gpt2" / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(UnsupportedArchitectureError, match="gpt2"):
        load_model(tmp_path / "gpt2")


def test_weights_that_do_not_match_config_are_rejected(tmp_path):
    _hf_model("qwen3", tmp_path)
    import json

    config = json.loads((tmp_path / "qwen3" / "config.json").read_text())
    config["intermediate_size"] = 128
    (tmp_path / "qwen3" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelDirectoryError, match="wrong shapes"):
        load_model(tmp_path / "qwen3")
