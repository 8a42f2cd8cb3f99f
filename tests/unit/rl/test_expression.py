"""The countdown answer parser: precedence, literals, and total on malformed input."""

import pytest

from rollspec.rl.tasks.expression import MAX_EXPRESSION_CHARS, evaluate


@pytest.mark.parametrize(
    ("text", "value", "literals"),
    [("2+3*4", 14, [2, 3, 4]), ("(2+3)*4", 20, [2, 3, 4]), ("10-4-3", 3, [10, 4, 3]), ("2*(3-5)", -4, [2, 3, 5]),
     ("0", 0, [0]), ("((7))", 7, [7]), ("8-2*3+1", 3, [8, 2, 3, 1])],
)
def test_evaluates_with_standard_precedence(text, value, literals):
    assert evaluate(text) == (value, literals)


@pytest.mark.parametrize(
    "text", ["", "2+", "+2", "-2", "(2+3", "2+3)", "2 + 3", "2/3", "02", "2**3", "()", "2(3)", "x", None, 5,
             "1" * (MAX_EXPRESSION_CHARS + 1), "(" * 40 + "1" + ")" * 40],
)
def test_malformed_expressions_give_none(text):
    assert evaluate(text) is None
