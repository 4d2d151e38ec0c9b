"""The lab harness itself: namespaced listeners and a clean teardown."""

from __future__ import annotations

import os
import subprocess
import threading

import pytest

from sandbox.lab.cluster import Lab
from sandbox.lab.proc import socket_in_netns

pytestmark = pytest.mark.e2e


def test_socket_in_netns_serves_the_lab_not_the_root_namespace(lab: Lab) -> None:
    node = lab.add_node("node1")
    sock = socket_in_netns(lab.ns("central"), lab.central_ip, 0)
    port = sock.getsockname()[1]

    def serve_once() -> None:
        conn, _ = sock.accept()
        conn.sendall(b"hello-from-central\n")
        conn.close()

    t = threading.Thread(target=serve_once)
    t.start()
    try:
        # reachable from a node over the underlay...
        out = node.exec(["bash", "-c", f"exec 3<>/dev/tcp/{lab.central_ip}/{port}; cat <&3"]).stdout
        assert out.strip() == "hello-from-central"
    finally:
        t.join(timeout=10)
        sock.close()
    # ...while the root namespace has no such address (checked without sending anything)
    root_addrs = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    assert lab.central_ip not in root_addrs


def test_down_removes_everything(lab: Lab) -> None:
    lab.add_node("node1")
    lab.add_outside()
    netns = [n for n in open(f"{lab.dir}/netns.list").read().split()]
    pids = [int(open(p).read()) for p in (f"{lab.dir}/node1/ovs-vswitchd.pid", f"{lab.dir}/central/nb.pid")]
    lab.down()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not [n for n in netns if n in listed]
    assert not os.path.exists(lab.dir)
    from sandbox.lab.proc import alive
    assert not [p for p in pids if alive(p)]


def test_forwarder_serves_a_loopback_server_inside_the_lab(lab: Lab) -> None:
    import http.server

    from sandbox.lab.forward import Forwarder

    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = b"hello-through-forwarder\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    node = lab.add_node("node1")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        with Forwarder(lab.ns("central"), lab.central_ip, httpd.server_address[1]) as fwd:
            for _ in range(3):
                out = node.exec(["curl", "-s", "-m", "5", fwd.url + "/"]).stdout
                assert out.strip() == "hello-through-forwarder"
    finally:
        httpd.shutdown()
        httpd.server_close()
