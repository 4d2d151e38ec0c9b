"""The API server's forwarder as a daemon: listens on HOST:PORT inside NETNS (the lab's central
namespace) and relays to 127.0.0.1:TARGET in the root namespace, so nodes reach the API server
while it listens on loopback only.

    python -m sandbox.forward NETNS HOST PORT TARGET
"""

from __future__ import annotations

import signal
import sys
import threading

from sandbox.lab.forward import Forwarder


def main(argv: list[str]) -> int:
    netns, host, port, target = argv[0], argv[1], int(argv[2]), int(argv[3])
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    fwd = Forwarder(netns, host, target, port=port)
    print(f"forwarding {netns} {fwd.host}:{fwd.port} -> 127.0.0.1:{target}", flush=True)
    while not stop.wait(0.5):
        pass
    fwd.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
