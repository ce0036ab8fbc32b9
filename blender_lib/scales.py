"""Score scales: what a candidate's score means, so that tables name the unit they show.

A share (a binary win, a probability of beating a reference) is shown as a percentage; a bounded score
(MT-Bench's 1-10) or any real-valued score is shown as it is, never multiplied by 100.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import DataError


@dataclass(frozen=True)
class ScoreScale:
    """What a score means, so that tables show it in its unit: a share (binary or probability: shown as
    a percentage) or a bounded or open score (shown as is, never multiplied by 100)."""

    name: str
    low: float | None
    high: float | None
    is_share: bool

    def unit(self, key: str) -> str:
        if self.is_share:
            return "win rate %"
        bounds = f" ({self.low:g}-{self.high:g})" if self.low is not None and self.high is not None else ""
        return f"mean {key}{bounds}"

    def gap_unit(self) -> str:
        return "pts" if self.is_share else "score"

    def display(self, values: np.ndarray) -> np.ndarray:
        return 100 * values if self.is_share else values

    def check(self, value: float, where: str) -> float:
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise DataError(f"{where}: score {value!r} is outside the {self.name} scale [{self.low}, {self.high}]")
        return value


SCALES: dict[str, ScoreScale] = {
    "binary": ScoreScale("binary", 0.0, 1.0, True),  # 1 win, 0 loss (0.5 a draw)
    "probability": ScoreScale("probability", 0.0, 1.0, True),  # P(better than a reference)
    "likert-10": ScoreScale("likert-10", 1.0, 10.0, False),  # MT-Bench's single-answer 1-10
    "float": ScoreScale("float", None, None, False),  # any real-valued score
}


def scale_of(scale: str | ScoreScale) -> ScoreScale:
    if isinstance(scale, ScoreScale):
        return scale
    if scale not in SCALES:
        raise ValueError(f"unknown score scale {scale!r}; known: {sorted(SCALES)}")
    return SCALES[scale]
