"""The checks every generator (native engine, vLLM backend) makes before queueing a request."""

from rollspec.engine.errors import InvalidRequestError, PromptTooLongError
from rollspec.engine.sequence import Request


def check_request(request: Request, *, vocab_size: int, max_seq_len: int, in_flight: object) -> None:
    """Raise InvalidRequestError / PromptTooLongError naming the request if it cannot be served:
    empty prompt, prompt + max_new_tokens over max_seq_len, token ids outside the vocabulary, or
    an id already in `in_flight` (any container of request ids)."""
    params, prompt = request.params, request.prompt_ids
    if not prompt:
        raise InvalidRequestError(f"request {request.request_id!r} has an empty prompt")
    if len(prompt) + params.max_new_tokens > max_seq_len:
        raise PromptTooLongError(
            f"request {request.request_id!r}: prompt of {len(prompt)} tokens plus max_new_tokens "
            f"{params.max_new_tokens} exceeds max_seq_len {max_seq_len}")
    bad = [t for t in (*prompt, *params.stop_token_ids) if not 0 <= t < vocab_size]
    if bad:
        raise InvalidRequestError(f"request {request.request_id!r} has token ids outside [0, {vocab_size}): {bad[:5]}")
    if request.request_id in in_flight:  # type: ignore[operator]
        raise InvalidRequestError(f"request id {request.request_id!r} is already in flight")
