"""How the sandbox's background processes (a node agent each, the scheduler and endpoints
controller) run: `python -m <module> <sandbox dir> [args]`, one sync every POLL seconds until
SIGTERM or SIGINT. A failed sync is logged and tried again, since the API server may restart."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable

from sandbox.state import State

LOG = logging.getLogger(__name__)
POLL = 0.2


def run(name: str, sync_once: Callable[[], None], stop: threading.Event, interval: float = POLL) -> None:
    LOG.info("%s started", name)
    while not stop.is_set():
        try:
            sync_once()
        except Exception as exc:  # noqa: BLE001 - keep going: the API server may restart
            LOG.warning("%s: sync: %s", name, exc)
        stop.wait(interval)


def main(argv: list[str], name: str, make: Callable[[State], Callable[[], None]]) -> int:
    """The process: load the sandbox's state from argv[0], build the sync with `make`, loop."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    state = State.load(argv[0])
    if state is None:
        print(f"no sandbox in {argv[0]}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run(name, make(state), stop)
    return 0
