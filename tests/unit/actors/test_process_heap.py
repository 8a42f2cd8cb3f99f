"""An actor process's start-up heap is collected once, then frozen out of the collector's walks; run in
child processes, since freezing is for the life of a process."""

import os
import subprocess
import sys

FREEZE = """
import gc, weakref
from rollspec.actors.process_heap import freeze_startup_heap

class Node:
    pass

garbage = Node(); garbage.self = garbage; dead = weakref.ref(garbage); del garbage
live = [Node() for _ in range(100)]
frozen = freeze_startup_heap()
assert dead() is None, "garbage made before the freeze must be collected, not frozen"
assert frozen == gc.get_freeze_count() > 100 and gc.get_count()[0] < 100
assert not [x for x in gc.get_objects() if type(x) is Node]  # frozen: in no generation a collection walks
later = Node(); later.self = later; dead_later = weakref.ref(later); del later
assert freeze_startup_heap() == frozen  # once per process
gc.collect()
assert dead_later() is None, "objects made after the freeze stay collectable"
print("ok")
"""

AT_EXIT = """
from rollspec.actors.process_heap import freeze_startup_heap

class Node:
    def __del__(self):
        print("freed")

node = Node(); node.self = node
freeze_startup_heap()
del node
print("frozen")
"""

REWARD_ACTOR = """
import gc
from rollspec.actors.config import RewardSpec
from rollspec.actors.reward_actor import RewardActor
from rollspec.transport import Broker, QueueConfig

broker = Broker([QueueConfig(name=name) for name in ("trajectories", "scored")])
assert gc.get_freeze_count() == 0
actor = RewardActor(RewardSpec(function="builtin", timeout_s=5.0), name="reward-0", broker_address=broker.address)
print(gc.get_freeze_count() > 0)
actor.stop()
broker.close()
"""


def _run(code: str) -> str:  # the last line printed
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.split()[-1]


def test_the_startup_heap_is_collected_then_frozen_once():
    assert _run(FREEZE) == "ok"


def test_an_actor_freezes_its_startup_heap_before_its_loop_starts():
    assert _run(REWARD_ACTOR) == "True"


def test_the_heap_is_unfrozen_at_exit_so_its_cycles_are_freed_then():
    """A cycle frozen at start-up is freed by the interpreter's last collection, as it would be unfrozen."""
    out = subprocess.run([sys.executable, "-c", AT_EXIT], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["frozen", "freed"]
