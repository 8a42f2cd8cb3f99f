"""The scheduler benchmark's run order: every contender runs right after every other equally often, so a cost or
gain from the run before (allocator, caches) lands on no contender in particular."""

import itertools
from collections import Counter

from bench.scheduler import interleave, run_order


def _follows(orders: list[list[str]]) -> Counter:
    return Counter(pair for order in orders for pair in zip(order, order[1:]))


def test_every_contender_runs_right_after_every_other_equally_often():
    for n in range(2, 8):
        contenders = [f"c{i}" for i in range(n)]
        cycle = n if n % 2 == 0 else 2 * n
        orders = [run_order(contenders, r) for r in range(cycle)]
        assert all(sorted(order) == contenders for order in orders)
        follows = _follows(orders)
        assert len({follows[pair] for pair in itertools.permutations(contenders, 2)}) == 1, follows


def test_rotating_one_order_fails_the_same_check():
    contenders = ["p", "p2", "pd", "an", "a"]
    follows = _follows([contenders[r:] + contenders[:r] for r in range(10)])
    assert follows[("p", "p2")] > 0 and follows[("p2", "p")] == 0


def test_interleave_runs_each_contender_once_per_repeat():
    runs = {"a": [], "p": [], "f": []}
    interleave(runs, ["a", "p"], 5, lambda name: name)
    assert runs == {"a": ["a"] * 5, "p": ["p"] * 5, "f": []}
