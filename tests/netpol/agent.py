"""One process per network namespace of the truth-table suite: servers and a prober.

    nsenter --net=/run/netns/NS python agent.py NAME [--tcp P,..] [--udp P,..]

Standard library only (it runs inside pod and node namespaces). It serves, on every
address of its namespace:
- TCP: accepts, writes NAME and a newline, closes once the client has closed;
- UDP: answers every datagram with NAME.
Then it prints `ready NAME` and reads probe batches from stdin, one JSON list per line, each
probe `[protocol, ip, port, timeout]`; it runs a batch's probes at once and answers with one
JSON list: per probe the name of the server that answered, or null.
"""

from __future__ import annotations

import json
import os
import random
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor


# --- servers ------------------------------------------------------------------------------------
def serve_tcp(name: bytes, port: int) -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(512)

    def answer(conn: socket.socket) -> None:
        # The client closes first, so TIME_WAIT stays on its side: a server's TIME_WAIT would
        # meet a reused 4-tuple and delay that probe past its timeout.
        with conn:
            try:
                conn.sendall(name + b"\n")
                conn.settimeout(3)
                while conn.recv(256):
                    pass
            except OSError:
                pass

    def loop() -> None:
        while True:
            conn, _ = srv.accept()
            threading.Thread(target=answer, args=(conn,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()


def serve_udp(name: bytes, port: int) -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("0.0.0.0", port))

    def loop() -> None:
        while True:
            _, peer = srv.recvfrom(2048)
            srv.sendto(name, peer)
    threading.Thread(target=loop, daemon=True).start()


# --- probes -------------------------------------------------------------------------------------
def tcp_socket(timeout: float) -> socket.socket:
    """A TCP socket bound to a random source port. Left to itself, Linux hands a connect()
    that never got an answer (a blocked probe) the same source port again for the same
    destination; OVS's userspace conntrack then meets a new SYN on the old entry and judges
    it invalid, and the pair stays blocked for as long as the probes keep coming."""
    for _ in range(20):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("0.0.0.0", random.randint(20000, 60999)))
        except OSError:
            s.close()
            continue
        s.settimeout(timeout)
        return s
    raise OSError("no free source port")


def probe_tcp(ip: str, port: int, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    try:
        with tcp_socket(timeout) as s:
            s.connect((ip, port))
            data = b""
            while not data.endswith(b"\n"):
                s.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = s.recv(256)
                if not chunk:
                    break
                data += chunk
            return data.decode().strip() or None
    except OSError:
        return None


def probe_udp(ip: str, port: int, timeout: float) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.connect((ip, port))         # only answers from (ip, port) are received
            s.send(b"probe")
            return s.recv(2048).decode() or None
        except OSError:
            return None


PROBES = {"TCP": probe_tcp, "UDP": probe_udp}


def main(argv: list[str]) -> int:
    name = argv[0]
    opts = dict(zip(argv[1::2], argv[2::2], strict=True))

    def ports(flag: str) -> list[int]:
        return [int(p) for p in opts.get(flag, "").split(",") if p]
    for port in ports("--tcp"):
        serve_tcp(name.encode(), port)
    for port in ports("--udp"):
        serve_udp(name.encode(), port)
    pool = ThreadPoolExecutor(max_workers=256)
    print(f"ready {name}", flush=True)
    for line in sys.stdin:
        batch = json.loads(line)
        results = list(pool.map(lambda p: PROBES[p[0]](p[1], int(p[2]), float(p[3])), batch))
        sys.stdout.write(json.dumps(results) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main(sys.argv[1:]))
