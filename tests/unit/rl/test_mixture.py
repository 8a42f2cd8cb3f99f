"""TaskMixture: deterministic random access, weights, difficulty, disjoint held-out split."""

import pytest

from rollspec.rl.mixture import MixtureWeightsError, SplitExhaustedError, TaskMixture
from rollspec.rl.split import EvalFractionError, Split, hash_unit, split_of
from rollspec.rl.tasks import UnknownTaskError, get_task, task_names

ALL = {name: 1.0 for name in task_names()}


def test_same_arguments_give_the_same_examples_in_any_access_order():
    mixture = TaskMixture(ALL, seed=5)
    forward = mixture.take(300)
    assert [mixture[i] for i in reversed(range(300))] == forward[::-1]
    assert TaskMixture(dict(reversed(list(ALL.items()))), seed=5).take(300) == forward
    iterator = iter(mixture)
    assert [next(iterator) for _ in range(50)] == forward[:50]
    assert mixture.take(10, start=100) == forward[100:110]
    assert TaskMixture(ALL, seed=6).take(300) != forward


def test_weights_set_the_task_frequencies():
    examples = TaskMixture({"addition": 3.0, "sorting": 1.0, "reversal": 0.0}, seed=0).take(4000)
    share = sum(e.task == "addition" for e in examples) / len(examples)
    assert 0.72 < share < 0.78, share
    assert {e.task for e in examples} == {"addition", "sorting"}


def test_train_and_eval_prompts_are_disjoint_and_labelled():
    train = TaskMixture(ALL, seed=1, split=Split.TRAIN, eval_fraction=0.2).take(3000)
    held_out = TaskMixture(ALL, seed=1, split=Split.EVAL, eval_fraction=0.2).take(600)
    assert not {e.prompt for e in train} & {e.prompt for e in held_out}
    assert all(split_of(e.prompt, 0.2) is Split.TRAIN for e in train)
    assert all(split_of(e.prompt, 0.2) is Split.EVAL for e in held_out)
    # Disjoint by content, not by seed: a small prompt space forces repeats on each side.
    small_train = TaskMixture({"countdown": 1}, seed=2, difficulty=1).take(2000)
    small_eval = TaskMixture({"countdown": 1}, seed=3, difficulty=1, split=Split.EVAL).take(300)
    assert len({e.prompt for e in small_train}) < 2000
    assert not {e.prompt for e in small_train} & {e.prompt for e in small_eval}


def test_rl_prompts_are_disjoint_from_train_and_eval_and_train_is_the_region_above_both():
    every = {split: {e.prompt for e in TaskMixture(ALL, seed=4, split=split, eval_fraction=0.1, rl_fraction=0.15)
                     .take(600)} for split in Split}
    assert not every[Split.RL] & every[Split.TRAIN] and not every[Split.RL] & every[Split.EVAL]
    assert all(0.1 <= hash_unit(p) < 0.25 for p in every[Split.RL])
    # With the defaults, TRAIN is the hash region >= 0.1 the zoo policy was SFT'd on before the RL
    # share existed, so adding it did not change a single zoo training prompt.
    prompts = [get_task("addition").generate(seed, 1).prompt for seed in range(3000)]
    assert [split_of(p) is Split.TRAIN for p in prompts] == [hash_unit(p) >= 0.1 for p in prompts]
    shares = [sum(split_of(p) is split for p in prompts) / len(prompts) for split in (Split.EVAL, Split.RL)]
    assert all(0.03 < share < 0.07 for share in shares), shares


def test_split_fraction_is_about_right():
    prompts = [get_task("sorting").generate(seed).prompt for seed in range(5000)]
    share = sum(split_of(p, 0.1) is Split.EVAL for p in prompts) / len(prompts)
    assert 0.08 < share < 0.12, share


def test_difficulty_per_task():
    examples = TaskMixture({"reversal": 1, "sorting": 1}, seed=0, difficulty={"reversal": 1}).take(400)
    reversal = [len(e.prompt) - len("reversal:") for e in examples if e.task == "reversal"]
    sorting = [e.prompt.count(",") + 1 for e in examples if e.task == "sorting"]
    assert max(reversal) <= 3 and max(sorting) > 3


@pytest.mark.parametrize("weights", [{}, {"addition": -1.0}, {"addition": 0.0}, {"addition": float("nan")},
                                     {"addition": "1"}, [("addition", 1.0)]])
def test_bad_weights_raise(weights):
    with pytest.raises(MixtureWeightsError):
        TaskMixture(weights, seed=0)


def test_bad_arguments_raise_named_errors():
    with pytest.raises(UnknownTaskError, match="division"):
        TaskMixture({"division": 1.0}, seed=0)
    with pytest.raises(UnknownTaskError, match="division"):
        TaskMixture({"addition": 1.0}, seed=0, difficulty={"division": 2})
    for fraction in (0.0, 1.0, -0.5, "0.1"):
        with pytest.raises(EvalFractionError):
            TaskMixture(ALL, seed=0, eval_fraction=fraction)
        with pytest.raises(EvalFractionError, match="rl_fraction"):
            TaskMixture(ALL, seed=0, rl_fraction=fraction)
    with pytest.raises(EvalFractionError, match="eval_fraction \\+ rl_fraction must be < 1"):
        TaskMixture(ALL, seed=0, eval_fraction=0.5, rl_fraction=0.5)
    with pytest.raises(IndexError):
        TaskMixture(ALL, seed=0)[-1]


def test_an_empty_split_raises_instead_of_hanging():
    with pytest.raises(SplitExhaustedError, match="addition"):
        TaskMixture({"addition": 1.0}, seed=0, difficulty=1, split=Split.EVAL, eval_fraction=1e-12)[0]
