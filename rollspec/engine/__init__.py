"""Single-process generation: model, KV cache, sampler, drafters, lossless verification."""
