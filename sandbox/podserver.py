"""A pod's process: a tiny HTTP server that answers its name on every GET.

    python -m sandbox.podserver NAME PORT [ACCESS_LOG]

Once listening it creates <ACCESS_LOG>.ready (when given); each request appends
"<client ip> <path>" to ACCESS_LOG.
"""

from __future__ import annotations

import http.server
import signal
import sys


def main(argv: list[str]) -> int:
    name, port = argv[0], int(argv[1])
    log = argv[2] if len(argv) > 2 else None
    body = (name + "\n").encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            if log:
                with open(log, "a", encoding="utf-8") as f:
                    f.write(f"{self.client_address[0]} {self.path}\n")

        def log_message(self, fmt: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if log:
        open(log + ".ready", "w").close()  # noqa: SIM115
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
