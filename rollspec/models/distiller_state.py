"""What a draft distiller carries from one refresh to the next besides the drafter's weights, in a form a
checkpoint can hold without pickle: AdamW's per-parameter tensors under `<parameter>@<state key>` names
(safetensors) and the batch-sampling RNG and trajectory buffer as JSON-ready values.

A resumed draft-refresh actor that loads these refreshes as the one that saved them would have: the
moments are not rebuilt from zero, and the trajectories it had kept are still there to train on.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable, Sequence

import torch

from rollspec.models.token_batch import TokenSequence

Weights = dict[str, torch.Tensor]
SEPARATOR = "@"


class DistillerStateError(ValueError):
    """Saved distiller state that does not fit this drafter, or is not well formed."""


@dataclasses.dataclass(frozen=True, slots=True)
class TrainerState:
    """The optimizer's tensors and the batch-sampling RNG as they stood when the weights they go with were made."""

    optimizer: Weights
    rng_state: tuple

    @property
    def optimizer_steps(self) -> int:
        """AdamW steps the moments have seen (0 for a fresh optimizer)."""
        steps = [t for name, t in self.optimizer.items() if name.endswith(f"{SEPARATOR}step")]
        return int(steps[0].item()) if steps else 0


def optimizer_tensors(optimizer: torch.optim.Optimizer, named_params: Iterable[tuple[str, torch.nn.Parameter]]) -> Weights:
    """Copies of every tensor in the optimizer's per-parameter state, named `<parameter>@<key>`."""
    out: Weights = {}
    for name, param in named_params:
        for key, value in optimizer.state.get(param, {}).items():
            if not isinstance(value, torch.Tensor):
                raise DistillerStateError(f"optimizer state {name}{SEPARATOR}{key} is {type(value).__name__}, not a tensor")
            out[f"{name}{SEPARATOR}{key}"] = value.detach().clone()
    return out


def load_optimizer_tensors(optimizer: torch.optim.Optimizer, named_params: Iterable[tuple[str, torch.nn.Parameter]],
                           tensors: Weights) -> None:
    """Put saved per-parameter state into `optimizer`; every name must be one of its parameters, with the
    parameter's shape for the moment tensors. Nothing changes on error."""
    params = dict(named_params)
    state: dict[torch.nn.Parameter, dict[str, torch.Tensor]] = {}
    for full_name, tensor in tensors.items():
        name, _, key = full_name.rpartition(SEPARATOR)
        param = params.get(name)
        if param is None or not key:
            raise DistillerStateError(f"saved optimizer state {full_name!r} names no parameter of this drafter")
        if tensor.dim() and tensor.shape != param.shape:
            raise DistillerStateError(f"saved optimizer state {full_name!r} has shape {tuple(tensor.shape)}, "
                                      f"the parameter {tuple(param.shape)}")
        state.setdefault(param, {})[key] = tensor.to(param.device if tensor.dim() else tensor.device).clone()
    if state and len(state) != len(params):
        missing = sorted(n for n, p in params.items() if p not in state)
        raise DistillerStateError(f"saved optimizer state lacks parameters {missing[:5]}")
    optimizer.state.clear()
    optimizer.state.update(state)


def rng_state_to_json(state: tuple) -> list:
    """random.Random.getstate() as nested lists."""
    version, internal, gauss_next = state
    return [version, list(internal), gauss_next]


def rng_state_from_json(value: object) -> tuple:
    """The inverse of rng_state_to_json, checked by loading it into a throwaway Random."""
    try:
        version, internal, gauss_next = value  # type: ignore[misc]
        state = (int(version), tuple(int(x) for x in internal), None if gauss_next is None else float(gauss_next))
        random.Random().setstate(state)
    except (TypeError, ValueError) as exc:
        raise DistillerStateError(f"malformed RNG state ({exc!r})") from None
    return state


def buffer_to_json(buffer: Sequence[TokenSequence]) -> list:
    """The trajectory buffer as [prompt_len, [token ids]] pairs, oldest first."""
    return [[s.prompt_len, list(s.token_ids)] for s in buffer]


def buffer_from_json(value: object) -> list[TokenSequence]:
    """The inverse of buffer_to_json; every sequence needs a prompt inside its tokens."""
    if not isinstance(value, list):
        raise DistillerStateError(f"malformed trajectory buffer: a {type(value).__name__}, not a list")
    out = []
    for item in value:
        try:
            prompt_len, token_ids = item
            sequence = TokenSequence(tuple(int(t) for t in token_ids), int(prompt_len))
        except (TypeError, ValueError) as exc:
            raise DistillerStateError(f"malformed buffered trajectory ({exc!r})") from None
        if not 0 < sequence.prompt_len < len(sequence.token_ids) or min(sequence.token_ids) < 0:
            raise DistillerStateError(f"buffered trajectory with prompt_len {sequence.prompt_len} of "
                                      f"{len(sequence.token_ids)} tokens (or a negative id)")
        out.append(sequence)
    return out
