"""The controllers' worker loop: flagged steps first (the periodic resync, then each
controller's own refreshes), then batches of keys from the work queue.

The pods, services and network-policy controllers share this shape; each names its steps. A
step runs when its flag is set; a step that fails logs one line, sets its flag again and
holds the loop for a second, so no batch is processed on a stale view (a failed re-read of
the NB, of the gateways, of the node switches).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ovn_k8s.kube.workqueue import WorkQueue

LOG = logging.getLogger(__name__)
RETRY_PAUSE = 1.0  # seconds between attempts of a failing step
BATCH_WAIT = 0.5   # the longest a loop waits for keys before it looks at its flags again


@dataclass(frozen=True)
class Step:
    """Work that must run before the next batch whenever `flag` is set."""

    what: str  # for the log line: "sync", "re-reading the NB", ...
    flag: threading.Event
    fn: Callable[[], object]
    # Flags made moot by this step (a full sync also refreshes the gateways).
    clears: tuple[threading.Event, ...] = field(default=())


def _attempt(name: str, step: Step) -> bool:
    step.flag.clear()
    for other in step.clears:
        other.clear()
    try:
        step.fn()
        return True
    except Exception as exc:  # noqa: BLE001 -- retried by the loop
        LOG.warning("%s: %s failed: %s; will try again", name, step.what, exc)
        step.flag.set()
        return False


def run(name: str, queue: WorkQueue, stop: threading.Event, *, resync: Step,
        steps: Sequence[Step] = (), every_loop: Callable[[], None] | None = None,
        batch_size: int, process: Callable[[Sequence[str]], None],
        queue_depth: Callable[[int], None], resync_interval: float = 0.0) -> None:
    """Process batches until the queue shuts down. `resync.flag` is also set every
    `resync_interval` seconds (0: never); `every_loop` runs before each batch."""
    last_resync = time.monotonic()
    while not queue.shutting_down:
        if resync_interval and time.monotonic() - last_resync >= resync_interval:
            resync.flag.set()
        if resync.flag.is_set():
            last_resync = time.monotonic()
        if not all(_attempt(name, s) for s in (resync, *steps) if s.flag.is_set()):
            stop.wait(RETRY_PAUSE)
            continue
        if every_loop is not None:
            every_loop()
        keys = queue.get_batch(batch_size, 0.0, timeout=BATCH_WAIT)
        queue_depth(len(queue))
        if keys:
            process(keys)
