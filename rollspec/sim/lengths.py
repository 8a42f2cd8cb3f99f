"""Response-length distributions: a long-tailed lognormal for projections, or measured lengths to resample."""

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


class LengthError(ValueError):
    """A length distribution that cannot produce lengths (non-positive mean, empty sample, bad cap)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LengthDistribution:
    """Tokens generated per response.

    `lognormal`: exp(N(mu, sigma^2)) with mu chosen so the uncapped mean is `mean_tokens`,
    rounded up and clipped to [1, max_tokens] (the generation budget: responses that hit
    it are cut, which is what puts a spike at the cap in real RL runs).
    `empirical`: resampled with replacement from `samples` (measured lengths).
    """

    kind: str
    mean_tokens: float = 0.0
    sigma: float = 0.0
    max_tokens: int = 0
    samples: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind == "lognormal":
            if self.mean_tokens < 1 or self.sigma < 0 or self.max_tokens < 1:
                raise LengthError(f"lognormal lengths need mean_tokens >= 1, sigma >= 0, max_tokens >= 1, got "
                                  f"{self.mean_tokens!r}, {self.sigma!r}, {self.max_tokens!r}")
        elif self.kind == "empirical":
            if not self.samples or min(self.samples) < 1:
                raise LengthError(f"empirical lengths need a non-empty sample of lengths >= 1, got "
                                  f"{list(self.samples[:5])!r}")
        else:
            raise LengthError(f"length distribution kind must be 'lognormal' or 'empirical', got {self.kind!r}")

    @classmethod
    def lognormal(cls, mean_tokens: float, sigma: float, max_tokens: int) -> "LengthDistribution":
        return cls(kind="lognormal", mean_tokens=mean_tokens, sigma=sigma, max_tokens=max_tokens)

    @classmethod
    def empirical(cls, samples: list[int] | tuple[int, ...]) -> "LengthDistribution":
        return cls(kind="empirical", samples=tuple(int(s) for s in samples))

    def sample(self, rng: np.random.Generator, n: int) -> NDArray[np.int64]:
        if self.kind == "empirical":
            return rng.choice(np.asarray(self.samples, dtype=np.int64), size=n)
        mu = np.log(self.mean_tokens) - self.sigma**2 / 2
        raw = np.ceil(rng.lognormal(mu, self.sigma, size=n))
        return np.clip(raw, 1, self.max_tokens).astype(np.int64)

    def token_weighted_context(self, rng: np.random.Generator, prompt_tokens: int, n: int = 20000) -> float:
        """Mean cached tokens per row over all decode steps: prompt + E[L^2] / (2 E[L]).

        Longer responses are decoding for more steps, so the typical step sees a context
        longer than prompt + mean / 2; this is the context a fixed-batch projection should use.
        """
        lengths = self.sample(rng, n).astype(np.float64)
        return prompt_tokens + float(np.mean(lengths**2) / (2 * np.mean(lengths)))


class LengthSequence:
    """Measured lengths handed out in the order they were dispatched (wrapping around), for replaying a real run.

    Same `sample(rng, n)` interface as LengthDistribution; `rng` is unused. Stateful: each
    call continues where the last one stopped, so use one instance per simulated run.
    """

    def __init__(self, lengths: list[int] | tuple[int, ...]) -> None:
        if not lengths or min(lengths) < 1:
            raise LengthError(f"a length sequence needs lengths >= 1, got {list(lengths[:5])!r}")
        self._lengths = np.asarray(lengths, dtype=np.int64)
        self._next = 0

    def sample(self, rng: np.random.Generator, n: int) -> NDArray[np.int64]:
        index = (self._next + np.arange(n)) % self._lengths.size
        self._next += n
        return self._lengths[index]
