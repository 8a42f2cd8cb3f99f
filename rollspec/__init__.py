"""rollspec: fast RL post-training rollouts with lossless speculative decoding."""

__version__ = "0.1.0"
