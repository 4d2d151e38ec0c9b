"""Command line of the test API server: `python -m sandbox.kubeapi --listen 127.0.0.1:PORT`.

Authentication is on by default: a random bearer token, written only into --kubeconfig-out
(or --token-file), never taken on the command line. Runs in the foreground until SIGTERM or
SIGINT, then stops cleanly (exit 0). Exit 1 when it cannot start (port taken, bad certificate,
bad seed file), 2 on usage errors.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from sandbox.kubeapi.errors import ApiError
from sandbox.kubeapi.resources import BY_KIND
from sandbox.kubeapi.server import KubeApiServer

LOG = logging.getLogger(__name__)

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.kubeapi",
        description="Run ovn-k8s's small in-memory Kubernetes API server in the foreground "
                    "(pods, services, endpoints, nodes, namespaces, events, endpointslices; "
                    "list/watch/get/create/update/patch/delete). State is lost on exit. "
                    "SIGTERM or Ctrl-C stops it cleanly.")
    parser.add_argument("--listen", type=_listen, default=("127.0.0.1", 0), metavar="HOST:PORT",
                        help="address to serve on; port 0 picks a free port "
                             "(default: 127.0.0.1:0). The URL is printed on stdout.")
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument("--token-file", metavar="FILE",
                      help="require 'Authorization: Bearer TOKEN' with the token in FILE; a "
                           "missing FILE is created (mode 0600) with a random token. Default: "
                           "a random token that only --kubeconfig-out's file holds. Tokens are "
                           "never taken on the command line, where every user could read them")
    auth.add_argument("--anonymous", action="store_true",
                      help="serve without authentication (only for throw-away tests on "
                           "loopback)")
    parser.add_argument("--kubeconfig-out", metavar="FILE",
                        help="write a kubeconfig (mode 0600) pointing at this server, with the "
                             "token and the CA, for kubectl-style clients")
    parser.add_argument("--idle-timeout", type=float, default=90.0, metavar="SECONDS",
                        help="close a connection that sends nothing for this long (default: 90, "
                             "like kube-apiserver's HTTP server)")
    parser.add_argument("--tls-cert", metavar="FILE",
                        help="serve https with this PEM certificate (needs --tls-key); a "
                             "self-signed certificate is also written as the kubeconfig's CA")
    parser.add_argument("--tls-key", metavar="FILE", help="PEM private key of --tls-cert")
    parser.add_argument("--kubeconfig-ca", metavar="FILE",
                        help="CA to name in --kubeconfig-out when --tls-cert is not "
                             "self-signed (default: --tls-cert itself)")
    parser.add_argument("--tls-client-ca", metavar="FILE",
                        help="accept client certificates signed by this CA as authentication "
                             "(alternative to --token)")
    parser.add_argument("--bookmark-interval", type=float, default=60.0, metavar="SECONDS",
                        help="how often watches that allow bookmarks get a BOOKMARK event "
                             "(default: 60, like a real API server)")
    parser.add_argument("--watch-timeout", type=float, default=1800.0, metavar="SECONDS",
                        help="how long a watch without timeoutSeconds stays open (default: 1800)")
    parser.add_argument("--load", action="append", default=[], metavar="FILE",
                        help="create the objects in this JSON or YAML file at start-up (single "
                             "objects, multi-document YAML, or a List); may be repeated")
    parser.add_argument("--no-default-namespaces", action="store_true",
                        help="do not create the namespaces " + ", ".join(DEFAULT_NAMESPACES))
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"],
                        help="log level on stderr (default: info)")
    return parser


def _load_objects(path: str) -> list[dict[str, Any]]:
    import yaml  # sandbox only

    with open(path, encoding="utf-8") as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d]
    objs: list[dict[str, Any]] = []
    for doc in docs:
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: expected objects, got {type(doc).__name__}")
        if str(doc.get("kind", "")).endswith("List") and "items" in doc:
            objs.extend(doc["items"] or [])
        else:
            objs.append(doc)
    return objs


def seed(server: KubeApiServer, objs: Sequence[dict[str, Any]]) -> None:
    """Create objects, picking each one's resource from its kind."""
    for obj in objs:
        kind = obj.get("kind")
        if kind not in BY_KIND:
            raise ValueError(f"unsupported kind {kind!r} (supported: {', '.join(BY_KIND)})")
        server.create(BY_KIND[kind].plural, obj)


def _token(args: argparse.Namespace) -> str:
    """The bearer token: read from --token-file, or made (and written there) when absent."""
    if args.token_file and os.path.exists(args.token_file):
        with open(args.token_file, encoding="utf-8") as fh:
            token = fh.read().strip()
        if not token:
            raise ValueError(f"token file {args.token_file} is empty")
        return token
    token = secrets.token_urlsafe(32)
    if args.token_file:
        fd = os.open(args.token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(token + "\n")
    return token


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        print("error: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    if not (args.anonymous or args.token_file or args.kubeconfig_out or args.tls_client_ca):
        # Authentication is on; without one of these no client could ever authenticate.
        print("error: authentication is on: give --kubeconfig-out or --token-file to receive "
              "the token (or --anonymous)", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host, port = args.listen
    stop = threading.Event()
    try:
        token = None if args.anonymous else _token(args)
        server = KubeApiServer(host, port, token=token, tls_cert=args.tls_cert,
                               tls_key=args.tls_key, tls_client_ca=args.tls_client_ca,
                               bookmark_interval=args.bookmark_interval,
                               default_watch_timeout=args.watch_timeout,
                               idle_timeout=args.idle_timeout)
        if not args.no_default_namespaces:
            seed(server, [{"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": n}}
                          for n in DEFAULT_NAMESPACES])
        for path in args.load:
            seed(server, _load_objects(path))
        server.start()
    except (OSError, ValueError, ApiError) as exc:
        print(f"error: cannot start the API server: {exc}", file=sys.stderr)
        return 1
    try:
        if args.kubeconfig_out:
            server.write_kubeconfig(args.kubeconfig_out, ca_file=args.kubeconfig_ca)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        print(f"kubeapi listening on {server.url}", flush=True)
        # A timeout keeps the main thread waking up, so signals are handled promptly.
        while not stop.wait(0.5):
            pass
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        server.stop()
    return 0
