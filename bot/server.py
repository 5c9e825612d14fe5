"""Serving the Bolt app: an HTTP server (events, interactivity and the slash command at `/slack/events`,
plus `GET /healthz`), or Socket Mode with the same health endpoint beside it.

The HTTP server is the standard library's WSGI server with a thread per connection, so a slow
handler never delays another request's acknowledgement. What bounds a connection, so that neither
idle nor trickling sockets can exhaust the threads:
- connections are capped, `MAX_CONNECTIONS` in all and `MAX_PER_ADDRESS` from one client address;
  one past either cap gets a 503 and is closed at once;
- no single read waits more than `READ_TIMEOUT_S`, so a connection that sends nothing is dropped;
- the whole request (request line, headers and body) must arrive within `REQUEST_DEADLINE_S` of the
  connection being accepted, however steadily it trickles in, or the connection is dropped (a
  late body gets a 408). The deadline bounds reading only: the app reads the body before it does
  anything else, and its own handling time never counts.
Requests Bolt would fail on with a 500 (a body over `MAX_BODY_BYTES`, not UTF-8,
nested past what a parser follows, a timestamp that is not a number) get a 4xx before Bolt reads
them, and their bodies are never logged.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler

if TYPE_CHECKING:
    import socket

    from _typeshed import WriteableBuffer

log = logging.getLogger(__name__)

Health = Callable[[], dict[str, Any]]
Metrics = Callable[[], bytes]  # the Prometheus exposition, for GET /metrics
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


MAX_BODY_BYTES = 1024 * 1024  # Slack's payloads are a few kB; a view submission at most tens
READ_TIMEOUT_S = 5.0  # the longest any one read of a request waits
REQUEST_DEADLINE_S = 10.0  # the whole request, from accept: Slack's own requests arrive in milliseconds
MAX_CONNECTIONS = 256  # a thread each: about 8 MB of address space, little memory
# Behind a reverse proxy or load balancer every Slack request comes from the proxy's address, so one
# address must be able to carry real traffic: half the slots is far more than Slack's concurrent
# deliveries, while one client (a misbehaving one, or a proxy passing one on) can never take the
# other half, which stays for the health checks and everyone else.
MAX_PER_ADDRESS = MAX_CONNECTIONS // 2
_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    max_connections = MAX_CONNECTIONS
    max_per_address = MAX_PER_ADDRESS
    request_deadline_s = REQUEST_DEADLINE_S
    request_queue_size = 128  # the listen backlog: the default 5 resets connections under a burst

    def server_activate(self) -> None:
        super().server_activate()
        self._slots = threading.BoundedSemaphore(self.max_connections)
        self._lock = threading.Lock()
        self._per_address: Counter[str] = Counter()

    def process_request(self, request: Any, client_address: Any) -> None:
        address = client_address[0]
        with self._lock:
            admitted = self._per_address[address] < self.max_per_address and self._slots.acquire(blocking=False)
            if admitted:
                self._per_address[address] += 1
        if not admitted:
            log.debug("%s: refused a connection, at the cap", address)
            try:
                request.sendall(_BUSY)
            finally:
                self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)  # starts the connection's thread
        except BaseException:
            self._release(address)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        # socketserver's own, with the slot given back before the socket is closed: a client that
        # reconnects as soon as it sees the close finds its slot free
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self._release(client_address[0])
            self.shutdown_request(request)

    def _release(self, address: str) -> None:
        with self._lock:
            self._per_address[address] -= 1
            if self._per_address[address] <= 0:
                del self._per_address[address]
            self._slots.release()


class _RequestTooSlow(TimeoutError):
    pass


class _DeadlineReader(io.RawIOBase):
    """A connection's reads: each waits at most `read_timeout`, and none past `deadline` (monotonic).
    No timer or thread: each read's socket timeout is what is left, and the socket's timeout is put
    back after it, so the response is written with the usual one."""

    def __init__(self, sock: socket.socket, read_timeout: float | None, deadline: float) -> None:
        super().__init__()
        self._sock, self._read_timeout, self._deadline = sock, read_timeout, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise _RequestTooSlow("the request did not arrive in time")
        self._sock.settimeout(left if self._read_timeout is None else min(left, self._read_timeout))
        try:
            return self._sock.recv_into(buffer)
        except TimeoutError:
            if time.monotonic() >= self._deadline:
                raise _RequestTooSlow("the request did not arrive in time") from None
            raise
        finally:
            self._sock.settimeout(self._read_timeout)


class _QuietHandler(WSGIRequestHandler):
    timeout = READ_TIMEOUT_S

    def setup(self) -> None:
        super().setup()
        deadline = time.monotonic() + getattr(self.server, "request_deadline_s", REQUEST_DEADLINE_S)
        self.rfile.close()  # the plain socket file setup() made; nothing was read from it yet
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, self.timeout, deadline))

    def handle(self) -> None:
        try:
            super().handle()
        except _RequestTooSlow:
            log.debug("%s: dropped, the request did not arrive within its deadline", self.address_string())
        except TimeoutError:
            log.debug("%s: dropped, nothing received for %s s", self.address_string(), self.timeout)
        except ConnectionError:
            log.debug("%s: the client went away", self.address_string())

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def _refusal(environ: dict[str, Any]) -> tuple[str, str] | None:
    """(status, reason) for a request to /slack/events that Bolt must not see, else None; the body
    is read here (at most `MAX_BODY_BYTES`) and handed on in a fresh stream."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return "400 Bad Request", "Content-Length is not a number"
    if length < 0 or length > MAX_BODY_BYTES:
        return "413 Content Too Large", f"body over {MAX_BODY_BYTES} bytes"
    timestamp = environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP")
    if timestamp is not None and not timestamp.strip().isdigit():
        return "400 Bad Request", "X-Slack-Request-Timestamp is not a number"
    try:
        body = environ["wsgi.input"].read(length) if length else b""
    except TimeoutError:  # the request's deadline, or a read timeout: the connection is dropped after
        return "408 Request Timeout", "body not received in time"
    environ["wsgi.input"] = io.BytesIO(body)
    try:
        text = body.decode("utf-8")
        if text.lstrip().startswith(("{", "[")):
            json.loads(text)
    except UnicodeDecodeError:
        return "400 Bad Request", "body is not UTF-8"
    except RecursionError:
        return "400 Bad Request", "JSON nested too deeply"
    except ValueError:
        pass  # malformed JSON: Bolt answers that itself
    return None


def wsgi_app(slack: App | None, health: Health, metrics: Metrics | None = None) -> Callable[..., Iterable[bytes]]:
    bolt = SlackRequestHandler(slack) if slack is not None else None

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if metrics is not None and environ.get("PATH_INFO") == "/metrics" and environ.get("REQUEST_METHOD") == "GET":
            body = metrics()
            start_response("200 OK", [("Content-Type", METRICS_CONTENT_TYPE), ("Content-Length", str(len(body)))])
            return [body]
        if environ.get("PATH_INFO") == "/healthz" and environ.get("REQUEST_METHOD") == "GET":
            state = health()
            body = json.dumps(state, default=str).encode()
            status = "200 OK" if state.get("status", "ok") == "ok" else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        if bolt is not None and environ.get("PATH_INFO") == "/slack/events":
            refused = _refusal(environ)
            if refused is not None:
                status, reason = refused
                log.warning("refused a request to /slack/events: %s", reason)
                start_response(status, [("Content-Type", "text/plain")])
                return [reason.encode()]
            return bolt(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"Not Found"]

    return application


class HttpServer:
    """Runs in a background thread; `port` is the bound port (pass 0 for a free one). At most
    `max_connections` connections at once, `max_per_address` of them from one client address, and
    each must deliver its whole request within `request_deadline_s`, and a connection that sends nothing for
    `read_timeout_s` is dropped (see the module's docstring)."""

    def __init__(self, slack: App | None, health: Health, *, host: str = "0.0.0.0", port: int = 3000,
                 max_connections: int = MAX_CONNECTIONS, max_per_address: int = MAX_PER_ADDRESS,
                 request_deadline_s: float = REQUEST_DEADLINE_S, read_timeout_s: float = READ_TIMEOUT_S,
                 metrics: Metrics | None = None) -> None:
        server_class = type("_Capped", (_ThreadingWSGIServer,), {
            "max_connections": max_connections, "max_per_address": max_per_address,
            "request_deadline_s": request_deadline_s})
        handler_class = type("_Handler", (_QuietHandler,), {"timeout": read_timeout_s})
        self._server: WSGIServer = make_server(host, port, wsgi_app(slack, health, metrics), server_class=server_class,
                                   handler_class=handler_class)
        self.port: int = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="switchboard-http", daemon=True)

    def start(self) -> HttpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def start_socket_mode(slack: App, app_token: str) -> Any:
    """Connects to Slack over Socket Mode; returns the handler (`close()` it to stop)."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    handler = SocketModeHandler(slack, app_token=app_token)
    handler.connect()
    return handler
