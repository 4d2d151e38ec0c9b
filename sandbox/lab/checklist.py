"""The demos' output: timed steps, PASS/FAIL checks, and a summary whose exit code is the verdict."""

from __future__ import annotations

import time
from collections.abc import Callable


class Checklist:
    def __init__(self, out: Callable[[str], None] = print) -> None:
        self.out = out
        self.t0 = time.monotonic()
        self.passed = 0
        self.failed = 0

    def step(self, text: str) -> None:
        self.out(f"[{time.monotonic() - self.t0:5.1f}s] {text}")

    def check(self, text: str, ok: bool, detail: str = "") -> None:
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        self.out(f"  {'PASS' if ok else 'FAIL'}  {text}" + (f"  ({detail})" if detail else ""))

    def finish(self) -> int:
        """Print the summary; 0 when every check passed (and there was at least one)."""
        self.out("")
        self.step(f"done: {self.passed} passed, {self.failed} failed")
        ok = self.failed == 0 and self.passed > 0
        self.out(("PASS" if ok else "FAIL") + f": {self.passed} passed, {self.failed} failed")
        return 0 if ok else 1
