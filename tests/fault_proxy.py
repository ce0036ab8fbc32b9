"""A small fault-injecting HTTP proxy for the fault tests (stdlib only, no mocks).

It listens on 127.0.0.1 at a port the OS picks, forwards requests to a real upstream server
(here ``transformers serve``) and breaks the replies named by a deterministic fault plan:

- ``delay``: hold the request past the client's timeout, then close without a reply (not forwarded);
- ``429``: "Too Many Requests" with ``Retry-After`` (not forwarded);
- ``500``: an internal server error (not forwarded);
- ``drop``: close the connection without a reply (not forwarded);
- ``cut``: forward, send the headers with the full Content-Length, then close halfway through the body;
- ``truncate``: forward, send a complete HTTP reply whose JSON body is cut in half;
- ``malformed``: a 200 reply whose body is not JSON (not forwarded);
- ``wrong_shape``: a 200 reply with well-formed JSON that is not a chat completion (not forwarded);
- ``off_format``: forward, and replace the real reply's message text by one outside the judge format.

The plan is a list of :class:`Fault` rules matched against the request body: the first rule whose
``match`` occurs in the body and that has ``times`` left fires. A rule keyed by a prompt's text
always hits the same logical request whatever the order in which concurrent requests arrive, so
every test is deterministic. The proxy counts requests received, faults injected and requests
forwarded, and keeps a log of (arrival time, fault or None, body) per request.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

FaultKind = Literal["delay", "429", "500", "drop", "cut", "truncate", "malformed", "wrong_shape", "off_format"]
FAULT_KINDS: tuple[FaultKind, ...] = ("delay", "429", "500", "drop", "cut", "truncate", "malformed", "wrong_shape", "off_format")
# Faults the openai client retries by itself (timeout, 429, 5xx, connection errors); the others are
# replies that arrived and are not retried.
RETRIED_BY_CLIENT: frozenset[str] = frozenset({"delay", "429", "500", "drop", "cut"})
ALWAYS = 10**9  # ``times`` for a fault that never clears
OFF_FORMAT_TEXT = "I like turtles."
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "proxy-connection", "te", "upgrade"}


@dataclass
class Fault:
    kind: FaultKind
    match: str = ""  # a substring of the request body; "" matches every request
    times: int = 1  # how many matching requests get the fault; later ones pass


@dataclass
class Arrival:
    at: float  # time.monotonic() on arrival
    fault: FaultKind | None
    body: str


@dataclass
class ProxyCounts:
    received: int = 0
    forwarded: int = 0
    faults: Counter[str] = field(default_factory=Counter)

    @property
    def injected(self) -> int:
        return sum(self.faults.values())


class FaultProxy:
    """Forward to ``upstream`` ("http://127.0.0.1:PORT") and inject the planned faults; a context manager.

    ``delay_s`` must exceed the client's timeout; ``retry_after_s`` is sent with every 429.
    """

    def __init__(self, upstream: str, *, delay_s: float = 5.0, retry_after_s: int = 1, upstream_timeout: float = 120.0) -> None:
        host_port = upstream.split("://", 1)[-1].split("/", 1)[0]
        host, _, port = host_port.partition(":")
        self.upstream_host, self.upstream_port = host, int(port or 80)
        self.delay_s, self.retry_after_s, self.upstream_timeout = delay_s, retry_after_s, upstream_timeout
        self.plan: list[Fault] = []
        self.counts = ProxyCounts()
        self.log: list[Arrival] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle

    def __enter__(self) -> FaultProxy:
        proxy = self

        class Handler(_ProxyHandler):
            owner = proxy

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # the OS picks a free port, atomically
        self._server.daemon_threads = True  # a held ("delay") request never blocks stop()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopping.set()  # wakes held requests
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None, "the proxy is not running"
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def base_url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}/v1"

    # ---------------------------------------------------------------- plan and counts

    def set_plan(self, *faults: Fault) -> None:
        """Replace the plan and reset the counts and the log (one scenario at a time)."""
        with self._lock:
            self.plan = [Fault(f.kind, f.match, f.times) for f in faults]
            self.counts = ProxyCounts()
            self.log = []

    def healthy(self) -> None:
        """No faults from now on; counts and log start again."""
        self.set_plan()

    def _arrive(self, body: str) -> FaultKind | None:
        with self._lock:
            self.counts.received += 1
            fault: FaultKind | None = None
            for rule in self.plan:
                if rule.times > 0 and rule.match in body:
                    rule.times -= 1
                    fault = rule.kind
                    self.counts.faults[fault] += 1
                    break
            self.log.append(Arrival(time.monotonic(), fault, body))
            return fault

    def _forwarded(self) -> None:
        with self._lock:
            self.counts.forwarded += 1

    def arrivals(self, match: str) -> list[Arrival]:
        with self._lock:
            return [a for a in self.log if match in a.body]


class _ProxyHandler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"  # keep-alive, as the openai client (httpx) expects

    def log_message(self, format: str, *args: object) -> None:  # quiet: the test prints its own figures
        pass

    def do_GET(self) -> None:
        self._handle(b"")

    def do_POST(self) -> None:
        self._handle(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

    def _handle(self, body: bytes) -> None:
        owner = self.owner
        fault = owner._arrive(body.decode("utf-8", errors="replace"))
        if fault in ("drop", "delay"):
            if fault == "delay":
                owner._stopping.wait(owner.delay_s)
            self.close_connection = True  # nothing written: the client sees the connection end
            return
        if fault == "429":
            self._reply(429, _error_body("rate limited (fault proxy)", "rate_limit_exceeded"), {"Retry-After": str(owner.retry_after_s)})
            return
        if fault == "500":
            self._reply(500, _error_body("internal error (fault proxy)", "server_error"))
            return
        if fault == "malformed":
            self._reply(200, b"{'id': 'chatcmpl-x', choices: [oops")  # content-type JSON, body is not
            return
        if fault == "wrong_shape":
            self._reply(200, json.dumps({"object": "chat.completion", "id": "chatcmpl-x", "detail": "no choices"}).encode())
            return
        status, content_type, payload = self._forward(body)
        if fault == "off_format":
            reply = json.loads(payload)
            reply["choices"][0]["message"]["content"] = OFF_FORMAT_TEXT
            payload = json.dumps(reply).encode()
        elif fault == "truncate":
            payload = payload[: len(payload) // 2]  # a complete HTTP message whose JSON is cut short
        elif fault == "cut":
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))  # promises the whole body ...
            self.end_headers()
            self.wfile.write(payload[: len(payload) // 2])  # ... sends half, and closes
            self.close_connection = True
            return
        self._reply(status, payload, content_type=content_type)

    def _forward(self, body: bytes) -> tuple[int, str, bytes]:
        owner = self.owner
        connection = http.client.HTTPConnection(owner.upstream_host, owner.upstream_port, timeout=owner.upstream_timeout)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            connection.request(self.command, self.path, body=body or None, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            owner._forwarded()
            return response.status, response.getheader("Content-Type", "application/json"), payload
        finally:
            connection.close()

    def _reply(self, status: int, payload: bytes, extra: dict[str, str] | None = None, *, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)


def _error_body(message: str, code: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": code, "code": code}}).encode()
