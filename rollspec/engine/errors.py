"""Named errors raised at the engine's boundary: each says what was wrong and what was expected."""


class EngineError(Exception):
    """Base class for every error the engine raises on bad input."""


class ModelDirectoryError(EngineError):
    """A model directory is missing, incomplete or malformed."""


class UnsupportedArchitectureError(EngineError):
    """The checkpoint's architecture or one of its options is not implemented."""


class TokenizerMismatchError(EngineError):
    """Policy and draft (or a request) disagree on the tokenizer or vocabulary."""


class PromptTooLongError(EngineError):
    """A prompt plus its generation budget does not fit the context."""


class InvalidSamplingParamsError(EngineError):
    """A sampling parameter is out of range."""


class WeightUpdateError(EngineError):
    """A weight update has wrong names, shapes or dtypes; the old weights stay in place."""


class InvalidRequestError(EngineError):
    """A request is malformed: empty prompt, token ids outside the vocabulary, duplicate id."""
