"""Piecewise-linear interpolation of measured step times, with conservative extrapolation."""

import numpy as np
from numpy.typing import ArrayLike, NDArray


class PiecewiseLinear:
    """y(x) through measured points: linear between them, flat left of the first, linear right of the last.

    Invariants: xs strictly increasing. Left of the first point the value holds (a step
    never gets cheaper than the smallest measured batch, and a negative extrapolated time
    would be absurd); right of the last it continues the last segment's slope, floored at 0,
    because past the measured range step time grows with the work (compute-bound regime).
    """

    def __init__(self, xs: ArrayLike, ys: ArrayLike) -> None:
        self._xs = np.asarray(xs, dtype=np.float64)
        self._ys = np.asarray(ys, dtype=np.float64)
        assert self._xs.ndim == 1 and self._xs.shape == self._ys.shape and self._xs.size >= 1
        assert np.all(np.diff(self._xs) > 0), self._xs
        if self._xs.size >= 2:
            dx = self._xs[-1] - self._xs[-2]
            self._right_slope = max(0.0, float(self._ys[-1] - self._ys[-2]) / dx)
        else:
            self._right_slope = 0.0

    def __call__(self, x: ArrayLike) -> NDArray[np.float64]:
        at = np.asarray(x, dtype=np.float64)
        inside: NDArray[np.float64] = np.asarray(np.interp(at, self._xs, self._ys), dtype=np.float64)
        beyond = at - self._xs[-1]
        return np.where(beyond > 0, self._ys[-1] + self._right_slope * beyond, inside)
