"""A depth plan's prices for every k = 0 .. k_max (DepthScheduler.choose_depth, steps 1-3), in Python floats.

A plan runs this arithmetic on ~9 values; as numpy it was about a dozen calls of a few microseconds each inside the
engine (with the probe's, ~30 us of a ~250 us plan in a hot loop at B = 1 on the zoo). Each element is the formula
numpy applied element-wise, in the same order, so the prices are bit-identical to it.
"""

from dataclasses import dataclass

from rollspec.scheduler.catch_up import excess_at


@dataclass(frozen=True, slots=True)
class PlanPrices:
    """Per k: E[tokens | k] (`expected`), the step's seconds with the recurring catch-up at k > 0 (`step_s`), its
    tokens/s (`rate`) and the seconds of this step's catch-up beyond a steady step's (`catch_up_s`, 0 at k = 0)."""

    expected: list[float]
    step_s: list[float]
    rate: list[float]
    catch_up_s: list[float]

    @classmethod
    def of(cls, expected: list[float], step_s: list[float], per_token_s: float, recurring_excess: float,
           catch_up_tokens: int) -> "PlanPrices":
        """Prices from E[tokens | k], the cost model's step seconds, c_catch(B) per token of excess width, the mean
        excess width recurring while speculating (admissions keep a speculating drafter catching up) and this step's
        catch-up width."""
        recurring_s = per_token_s * recurring_excess
        step_s = [s if k == 0 else s + recurring_s for k, s in enumerate(step_s)]
        catch_up_s = [per_token_s * excess_at(catch_up_tokens, k) if k else 0.0 for k in range(len(step_s))]
        return cls(expected, step_s, [tokens / s for tokens, s in zip(expected, step_s)], catch_up_s)

    def start_rate(self, horizon: float) -> list[float]:
        """Tokens/s from k = 0: this step's catch-up spread over `horizon` steps at the new k."""
        return [tokens / (s + c / horizon) for tokens, s, c in zip(self.expected, self.step_s, self.catch_up_s)]

    def with_catch_up_s(self) -> list[float]:
        """Step seconds with this step's whole catch-up (a probe from k = 0 pays all of it in its one step)."""
        return [s + c for s, c in zip(self.step_s, self.catch_up_s)]
