"""`rollspec demo` asks the zoo policy what it was trained on: every task, the recipe's difficulty
(before, the mixture's harder default: reward 0.00 and drafters measured off their distribution)."""

from rollspec.launch.demo import demo_mixture
from rollspec.models.recipe import full_recipe
from rollspec.rl.split import Split
from rollspec.rl.tasks import task_names


def test_the_demo_draws_held_out_prompts_of_every_task_at_the_zoo_difficulty():
    mixture = demo_mixture()
    assert set(mixture.task_names) == set(task_names())
    assert set(mixture.difficulties.values()) == {full_recipe().difficulty}
    assert mixture.split is Split.EVAL
