"""The scheduler bench's rounds: pass after pass over the same prompts, each pass with its own sampling seeds."""

import itertools

from bench.engine_runs import Workload
from bench.scheduler_runs import endless_rounds


def _workload(num_prompts: int) -> Workload:
    return Workload(zoo=None, batch=2, prompts=[[5 + i, 6] for i in range(num_prompts)], temperature=1.0,
                    max_new_tokens=8)


def test_every_pass_holds_every_prompt_once_in_rounds_of_the_size_given():
    workload = _workload(5)
    first_two_passes = list(itertools.islice(endless_rounds(workload, 2), 6))
    assert [len(r) for r in first_two_passes] == [2, 2, 1, 2, 2, 1]
    for rounds in (first_two_passes[:3], first_two_passes[3:]):
        assert [list(q.prompt_ids) for r in rounds for q in r] == workload.prompts


def test_each_pass_samples_with_other_seeds_and_the_same_ones_for_every_contender():
    workload = _workload(4)
    seeds = [[q.params.seed for q in r] for r in itertools.islice(endless_rounds(workload, None), 3)]
    assert len({s for pass_ in seeds for s in pass_}) == 12  # no seed repeats across passes
    again = [[q.params.seed for q in r] for r in itertools.islice(endless_rounds(workload, None), 3)]
    assert again == seeds
