"""A tiny, total parser for integer expressions over + - * and parentheses.

Used to grade countdown answers without `eval`: it returns None instead of raising on any
malformed input, and bounds input length so recursion depth and integer size stay small.
"""

import re

MAX_EXPRESSION_CHARS = 64
TOKEN = re.compile(r"0|[1-9]\d{0,5}|[-+*()]")


def evaluate(expression: object) -> tuple[int, list[int]] | None:
    """Return (value, integer literals in order of appearance), or None if malformed.

    Standard precedence: `*` binds tighter than `+` and `-`, both left-associative. No
    unary minus, no whitespace, no leading zeros. Never raises.
    """
    if not isinstance(expression, str) or not 0 < len(expression) <= MAX_EXPRESSION_CHARS:
        return None
    tokens = TOKEN.findall(expression)
    if "".join(tokens) != expression:
        return None
    parser = _Parser(tokens)
    value = parser.expr()
    if value is None or parser.pos != len(tokens):
        return None
    return value, parser.literals


class _Parser:
    """Recursive descent over a token list; each rule returns None on a syntax error."""

    def __init__(self, tokens: list[str]):
        self.tokens, self.pos = tokens, 0
        self.literals: list[int] = []

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def expr(self) -> int | None:
        value = self.term()
        while value is not None and self._peek() in ("+", "-"):
            op = self.tokens[self.pos]
            self.pos += 1
            right = self.term()
            if right is None:
                return None
            value = value + right if op == "+" else value - right
        return value

    def term(self) -> int | None:
        value = self.factor()
        while value is not None and self._peek() == "*":
            self.pos += 1
            right = self.factor()
            if right is None:
                return None
            value *= right
        return value

    def factor(self) -> int | None:
        token = self._peek()
        if token is None:
            return None
        self.pos += 1
        if token == "(":
            value = self.expr()
            if value is None or self._peek() != ")":
                return None
            self.pos += 1
            return value
        if token.isdigit():
            self.literals.append(int(token))
            return int(token)
        return None
