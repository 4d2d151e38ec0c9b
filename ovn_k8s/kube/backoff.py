"""Capped exponential backoff with jitter, shared by the watch loop and the work queue."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """delay(n) = min(maximum, initial * factor**n) * (1 + jitter * r), r in [0, 1).

    Jitter only lengthens a delay (as k8s wait.Jitter), so `initial` is a true minimum and
    clients that failed together spread out instead of retrying in lockstep.
    """

    initial: float
    maximum: float
    factor: float = 2.0
    jitter: float = 0.1

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Delay before retry number `attempt` (0 = the first retry)."""
        # Cap the exponent first: factor**attempt overflows a float for large attempts.
        base = self.initial
        for _ in range(max(0, attempt)):
            base *= self.factor
            if base >= self.maximum:
                break
        return min(self.maximum, base) * (1.0 + self.jitter * rand())
