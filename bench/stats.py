"""Figures measured once per round, summarised as min/median/max, and the goals they are held to."""

from __future__ import annotations

import operator
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">=": operator.ge,
    ">": operator.gt,
}


def summarize(values: Iterable[float]) -> dict[str, float]:
    """min, median and max of `values` (at least one)."""
    ordered = sorted(values)
    if not ordered:
        msg = "no values to summarise"
        raise ValueError(msg)
    return {"min": ordered[0], "median": statistics.median(ordered), "max": ordered[-1]}


@dataclass
class Figures:
    """Named figures, each with a unit and one value per round, in the order first added."""

    units: dict[str, str] = field(default_factory=dict)
    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, value: float, unit: str) -> None:
        """Record one round's `value` of figure `name`."""
        known = self.units.setdefault(name, unit)
        if known != unit:
            msg = f"figure {name} is in {known}, not {unit}"
            raise ValueError(msg)
        self.values.setdefault(name, []).append(value)

    def latest(self, name: str) -> float:
        """The value of a figure recorded last (this round's)."""
        return self.values[name][-1]

    def median(self, name: str) -> float:
        """The median of a figure's values."""
        return summarize(self.values[name])["median"]

    def as_dict(self, digits: int = 4) -> dict[str, dict[str, Any]]:
        """Every figure: unit, min, median, max and the values per round, rounded to `digits`."""
        return {
            name: {
                "unit": self.units[name],
                **{key: round(value, digits) for key, value in summarize(values).items()},
                "values": [round(value, digits) for value in values],
            }
            for name, values in self.values.items()
        }


@dataclass(frozen=True)
class Goal:
    """A figure's median, or its ratio to another figure's median, compared with a threshold."""

    name: str
    figure: str
    comparison: str  # one of COMPARISONS
    threshold: float
    versus: str | None = None  # the ratio's denominator; None: the figure itself

    def evaluate(self, figures: Figures) -> dict[str, Any]:
        """The goal's value and whether it is met, or None for both when a figure is missing."""
        needed = [self.figure] if self.versus is None else [self.figure, self.versus]
        value = None
        if all(name in figures.values for name in needed):
            value = figures.median(self.figure)
            if self.versus is not None:
                value /= figures.median(self.versus)
        return {
            "name": self.name,
            "figure": self.figure,
            "versus": self.versus,
            "value": None if value is None else round(value, 3),
            "goal": f"{self.comparison} {self.threshold:g}",
            "met": None if value is None else COMPARISONS[self.comparison](value, self.threshold),
        }
