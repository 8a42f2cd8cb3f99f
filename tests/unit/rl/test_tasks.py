"""Built-in tasks: deterministic generation, exact rewards, robustness to garbage."""

import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rollspec.rl.tasks import (
    ANSWER_DELIMITER,
    MAX_DIFFICULTY,
    MIN_DIFFICULTY,
    DifficultyError,
    Example,
    PromptFormatError,
    TaskMismatchError,
    UnknownTaskError,
    extract_answer,
    get_task,
    reward,
    task_for_prompt,
    task_names,
)
from rollspec.rl.vocab import ALPHABET

NAMES = task_names()
DIFFICULTIES = range(MIN_DIFFICULTY, MAX_DIFFICULTY + 1)
SEEDS = range(150)


def test_registry_has_the_built_in_tasks():
    assert set(NAMES) >= {"addition", "multiplication", "sorting", "reversal", "countdown"}
    for name in NAMES:
        assert get_task(name).name == name
    with pytest.raises(UnknownTaskError, match="subtraction"):
        get_task("subtraction")


@pytest.mark.parametrize("name", NAMES)
def test_generation_is_a_function_of_seed_and_difficulty(name):
    task = get_task(name)
    for difficulty in DIFFICULTIES:
        first = [task.generate(seed, difficulty) for seed in range(50)]
        assert first == [task.generate(seed, difficulty) for seed in range(50)]
        assert len({example.prompt for example in first}) > 10, "seeds should give different prompts"
    assert task.generate(7) == task.generate(7, 3), "default difficulty is 3"


# Pinned: changing a generator silently would change every dataset, split and trained model.
SEED_0_PROMPTS = {
    "addition": "addition:876+141",
    "multiplication": "multiplication:876*15",
    "sorting": "sorting:97,53,5,33,65,62",
    "reversal": "reversal:q2gwvp",
    "countdown": "countdown:21 from 7,13,15",
}


def test_seed_zero_prompts_are_pinned():
    assert {name: get_task(name).generate(0).prompt for name in SEED_0_PROMPTS} == SEED_0_PROMPTS


@pytest.mark.parametrize("name", NAMES)
def test_reference_responses_earn_full_reward(name):
    task = get_task(name)
    for difficulty in DIFFICULTIES:
        for seed in SEEDS:
            example = task.generate(seed, difficulty)
            scratchpad, delimiter, answer = example.reference_response.partition(ANSWER_DELIMITER)
            assert delimiter and scratchpad and answer == example.answer, example
            assert task.reward(example, example.reference_response) == 1.0, example
            assert task.reward(example.prompt, example.reference_response) == 1.0, example
            assert reward(example.prompt, example.reference_response) == 1.0


@pytest.mark.parametrize("name", NAMES)
def test_corrupted_answers_score_zero(name):
    task = get_task(name)
    for seed in SEEDS:
        example = task.generate(seed)
        scratchpad = example.reference_response.partition(ANSWER_DELIMITER)[0]
        wrong_first = ("1" if example.answer[0] != "1" else "2") + example.answer[1:]
        corruptions = [
            f"{scratchpad}#{example.answer}0",
            f"{scratchpad}#{wrong_first}",
            f"{scratchpad}#",
            f"{scratchpad}{example.answer}",  # no delimiter
            f"{scratchpad}#{example.answer}#{example.answer}",  # two delimiters
            "",
        ]
        for response in corruptions:
            assert task.reward(example, response) == 0.0, (example, response)


def test_examples_of_hand_written_prompts():
    assert get_task("addition").generate(0).prompt.startswith("addition:")
    assert get_task("addition").solve("347+86") == ("7+6+0=13,4+8+1=13,3+0+1=4", "433")
    assert get_task("multiplication").solve("347*26") == ("347*6=2082,347*20=6940,2082+6940=9022", "9022")
    assert get_task("sorting").solve("5,12,3,9") == ("3;3,5;3,5,9", "3,5,9,12")
    assert get_task("reversal").solve("k3x9") == ("9,x,3,k", "9x3k")
    assert get_task("countdown").solve("20 from 2,3,4") == ("2+3=5,5*4=20", "(2+3)*4")


def test_countdown_accepts_any_expression_using_each_number_once():
    task = get_task("countdown")
    prompt = "countdown:20 from 2,3,4"
    for right in ["(2+3)*4", "4*(3+2)", "(3+2)*4", "4*(2+3)"]:
        assert task.reward(prompt, f"x#{right}") == 1.0, right
    for wrong in ["2+3+4", "20", "4*5", "(2+3)*4*1", "(2+2)*4+4", "(2+3)*4-0", "2+3)*4", "(2+3)*04"]:
        assert task.reward(prompt, f"x#{wrong}") == 0.0, wrong


def test_answer_extraction_handles_whitespace_and_trailing_eos():
    assert extract_answer("1+2+0=3#3") == "3"
    assert extract_answer("1+2+0=3# 3 ") == "3"
    assert extract_answer("1+2+0=3#3<eos><pad><pad>") == "3"
    assert extract_answer("1+2+0=3#3<eos>#4") == "3"
    assert extract_answer("no delimiter") is None
    assert extract_answer("a#b#c") is None
    assert extract_answer(None) is None


GARBAGE = [None, 3, b"#3", ["#3"], "#" * 1000, "(" * 5000, "#" + "(" * 5000, "#" + "9" * 100_000, "\x00#\x00", "#-1",
           "#" + "1*" * 40 + "1", "#()", "#1--2", "#" + "9" * 70]


@pytest.mark.parametrize("name", NAMES)
def test_garbage_responses_never_raise(name):
    example = get_task(name).generate(0)
    for response in GARBAGE:
        assert get_task(name).reward(example, response) == 0.0, response


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(NAMES), st.integers(0, 10**6), st.text(alphabet=ALPHABET + "<>é", max_size=200))
def test_random_responses_get_a_valid_reward(name, seed, response):
    assert get_task(name).reward(get_task(name).generate(seed), response) in (0.0, 1.0)


def test_prompts_of_other_tasks_are_rejected_by_name():
    addition = get_task("addition")
    with pytest.raises(PromptFormatError, match="sorting:1,2"):
        addition.reward("sorting:1,2", "#3")
    with pytest.raises(PromptFormatError):
        addition.reward("addition:1+", "#1")
    with pytest.raises(TaskMismatchError):
        addition.reward(get_task("sorting").generate(0), "#1")
    with pytest.raises(UnknownTaskError):
        task_for_prompt("division:4/2")
    with pytest.raises(PromptFormatError, match="reachable"):
        get_task("countdown").solve("1000 from 1,2")
    assert task_for_prompt("countdown:3 from 1,2").name == "countdown"
    assert reward(Example("addition:1+2", "", "3", "addition"), "1+2+0=3#3") == 1.0


@pytest.mark.parametrize("difficulty", [0, MAX_DIFFICULTY + 1, 2.0, True, "3"])
def test_bad_difficulty_raises_with_the_value(difficulty):
    with pytest.raises(DifficultyError, match=repr(difficulty).replace("(", r"\(")):
        get_task("addition").generate(0, difficulty)


@pytest.mark.parametrize("name", NAMES)
def test_responses_lengthen_with_difficulty(name):
    task = get_task(name)
    mean_length = [statistics.mean(len(task.generate(s, d).reference_response) for s in range(200)) for d in DIFFICULTIES]
    assert mean_length[-1] > mean_length[0] and mean_length == sorted(mean_length), mean_length
