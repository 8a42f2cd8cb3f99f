"""A rogue process without the run's keys attacks every endpoint of a tiny training run on loopback
(CURVE switched on for loopback, as a cluster run has it on for real interfaces). It tries to push
trajectories, take prompts, subscribe to weights, publish its own weight version, send malformed and
oversized frames and flood the channels. Nothing it sends is applied or trained on: the run ends
with exactly the counts of an undisturbed run, and every refusal is counted where it happened.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import security_workers as sw  # noqa: E402

from rollspec.transport import RunKeys  # noqa: E402

NUM_PROMPTS = sw.NUM_PROMPTS


@pytest.fixture(scope="module")
def runs():
    keys = RunKeys.create()
    return {"calm": sw.tiny_run(keys, with_rogue=False), "attacked": sw.tiny_run(RunKeys.create(), with_rogue=True)}


def test_an_attacked_run_trains_on_exactly_what_an_undisturbed_run_trains_on(runs):
    calm, attacked = runs["calm"]["counts"], runs["attacked"]["counts"]
    assert calm["trained"] == calm["consistent"] == NUM_PROMPTS and calm["poisoned"] == 0
    assert attacked == calm


def test_the_rogue_got_nothing_out_of_the_run(runs):
    rogue = runs["attacked"]["rogue"]
    assert rogue["raw_connections"] > 0 and rogue["flood_sent"] > 0  # it did try
    assert rogue["prompts_taken"] == 0 and rogue["weights_seen"] == [] and rogue["puts_confirmed"] == 0
    assert runs["attacked"]["probe_latest"] is None  # our actor never loaded the rogue's version


def test_every_refusal_is_counted_where_it_happened(runs):
    refused = runs["attacked"]["refused"]
    assert {"crypto", "unknown_key"} <= set(refused["broker"]), refused
    assert {"crypto", "unknown_key"} <= set(refused["publisher"]), refused
    assert refused["probe"], refused  # the client side refuses a server without the run's key
    assert runs["calm"]["refused"] == {"broker": {}, "publisher": {}, "probe": {}}
