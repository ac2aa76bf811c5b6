"""Local JSON-over-HTTP servers for the serving tests (stand-ins for TF Serving's REST API)."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any


class JsonHandler(http.server.BaseHTTPRequestHandler):
    """A request handler that answers with `send_json` and keeps no access log."""

    def send_json(self, status: int, reply: Any) -> None:
        """Sends ``reply`` as an ``application/json`` body with HTTP ``status``."""
        payload = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def read_body(self) -> bytes:
        """The request body (``Content-Length`` bytes)."""
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def log_message(self, *args: Any) -> None:
        pass


def start_server(handler: type[http.server.BaseHTTPRequestHandler]) -> tuple[http.server.ThreadingHTTPServer,
                                                                               threading.Thread]:
    """A ThreadingHTTPServer on 127.0.0.1 (a free port) serving in a daemon thread."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.timeout = 5
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return server, thread


def stop_server(server: http.server.ThreadingHTTPServer, thread: threading.Thread) -> None:
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@contextlib.contextmanager
def serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[http.server.ThreadingHTTPServer]:
    """``with serving(Handler) as server:`` -- the server runs for the block (port:
    ``server.server_address[1]``)."""
    server, thread = start_server(handler)
    try:
        yield server
    finally:
        stop_server(server, thread)
