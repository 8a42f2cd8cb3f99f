"""The unit every task produces, and how a response's final answer is found."""

from dataclasses import dataclass

from rollspec.rl.vocab import EOS_TOKEN

ANSWER_DELIMITER = "#"  # never used inside a scratchpad, so the first one ends the working
MAX_ANSWER_CHARS = 256  # anything longer is degenerate output, not an answer worth parsing


@dataclass(frozen=True, slots=True)
class Example:
    """One task instance.

    Invariants: `reference_response == scratchpad + ANSWER_DELIMITER + answer`, the task's
    reward of `reference_response` is 1.0, and `prompt` starts with the task's prefix.
    """

    prompt: str
    reference_response: str
    answer: str
    task: str


class PromptFormatError(ValueError):
    """A prompt that the task could not have generated (a caller bug, unlike a bad response)."""

    def __init__(self, task: str, prompt: object, expected: str):
        super().__init__(f"{task}: prompt {prompt!r} does not match the expected form {expected!r}")
        self.task, self.prompt, self.expected = task, prompt, expected


def extract_answer(response_text: object) -> str | None:
    """Return the final answer of a decoded response, or None when the format is wrong.

    The answer is everything after the one and only `ANSWER_DELIMITER`, with surrounding
    whitespace removed; text after an `<eos>` is ignored, in case the caller decoded past
    the end of the response. Never raises, whatever it is given.
    """
    if not isinstance(response_text, str):
        return None
    text = response_text.split(EOS_TOKEN, 1)[0]
    if text.count(ANSWER_DELIMITER) != 1:
        return None
    answer = text.partition(ANSWER_DELIMITER)[2].strip()
    if not answer or len(answer) > MAX_ANSWER_CHARS:
        return None
    return answer
