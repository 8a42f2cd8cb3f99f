"""What the depth policy is told a step cost (EngineConfig.step_clock): thread CPU time for a
single-threaded CPU engine by default (other processes' preemption must not price speculation out),
wall time when asked or when torch runs several threads."""

import types

import pytest
import torch

from rollspec.engine import engine as engine_module
from rollspec.engine.config import EngineConfig
from rollspec.engine.engine import Engine
from rollspec.engine.sampling_params import SamplingParams
from rollspec.engine.sequence import Request
from rollspec.models.random_models import random_decoder, tiny_config


class _Recorder:
    def __init__(self):
        self.times = []

    def choose_depth(self, batch_size, catch_up_tokens=0):
        return 0

    def observe(self, batch_size, k, num_accepted, draft_time_s, target_time_s):
        self.times.append(target_time_s)


@pytest.mark.parametrize("clock, threads, expected", [("auto", 1, "thread"), ("auto", 2, "wall"),
                                                      ("wall", 1, "wall"), ("thread", 2, "thread")])
def test_the_step_clock(clock, threads, expected, monkeypatch):
    ticks = {"thread": 0.0, "wall": 0.0}

    def clock_of(name, step):
        def read():
            ticks[name] += step
            return ticks[name]
        return read

    # Each clock advances by its own step per reading: the observed time tells which one was read.
    monkeypatch.setattr(engine_module, "time", types.SimpleNamespace(thread_time=clock_of("thread", 1.0),
                                                                     perf_counter=clock_of("wall", 1000.0)))
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        depth = _Recorder()
        engine = Engine(random_decoder(tiny_config(vocab_size=20), seed=0), EngineConfig(
            max_batch_size=2, max_seq_len=16, k_max=0, step_clock=clock), depth=depth)
        engine.generate([Request(request_id="a", prompt_ids=(1, 2), params=SamplingParams(max_new_tokens=4, seed=0))])
    finally:
        torch.set_num_threads(previous)
    assert depth.times and set(depth.times) == {1.0 if expected == "thread" else 1000.0}
