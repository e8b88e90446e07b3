"""A real HTTP webhook receiver on 127.0.0.1 (http.server in a thread) for hook tests."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def free_port() -> int:
    """A port nothing listens on now (so a hook aimed at it fails to connect)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Receiver:
    """Records every POSTed JSON document; answers ``status`` (settable while running)."""

    def __init__(self, port: int = 0, status: int = 200) -> None:
        self.status = status
        self.posts: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer._lock:
                    outer.headers.append({k.lower(): v for k, v in self.headers.items()})
                    if outer.status < 300:
                        outer.posts.append(json.loads(body))
                self.send_response(outer.status)
                self.end_headers()
                self.wfile.write(b"ok" if outer.status < 300 else b"receiver says no")

            def log_message(self, *_args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.posts)

    def wait_for(self, cond: Callable[[list[dict[str, Any]]], bool], limit_s: float = 60.0) -> None:
        deadline = time.monotonic() + limit_s
        while not cond(self.received()):
            assert time.monotonic() < deadline, f"receiver never saw it; got {self.received()}"
            time.sleep(0.05)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
